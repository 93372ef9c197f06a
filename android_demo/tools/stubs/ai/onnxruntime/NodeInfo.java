package ai.onnxruntime;

public class NodeInfo {
    public String getName() { return null; }
    public ValueInfo getInfo() { return null; }
}
