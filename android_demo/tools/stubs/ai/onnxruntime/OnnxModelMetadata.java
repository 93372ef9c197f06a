package ai.onnxruntime;

public class OnnxModelMetadata {
    public java.util.Map<String, String> getCustomMetadata() { return null; }
}
