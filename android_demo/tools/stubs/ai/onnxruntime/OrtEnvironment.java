package ai.onnxruntime;

public class OrtEnvironment implements AutoCloseable {
    public static OrtEnvironment getEnvironment() { return null; }
    public OrtSession createSession(String path, OrtSession.SessionOptions options) throws OrtException { return null; }
    public OrtSession createSession(byte[] model, OrtSession.SessionOptions options) throws OrtException { return null; }
    @Override
    public void close() {}
}
