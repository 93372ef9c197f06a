package ai.onnxruntime;

public class OrtSession implements AutoCloseable {
    public static class SessionOptions implements AutoCloseable {
        public void setIntraOpNumThreads(int n) throws OrtException {}
        public void addConfigEntry(String key, String value) throws OrtException {}
        @Override
        public void close() {}
    }

    public static class Result implements AutoCloseable, Iterable<java.util.Map.Entry<String, OnnxValue>> {
        @Override
        public java.util.Iterator<java.util.Map.Entry<String, OnnxValue>> iterator() { return null; }
        @Override
        public void close() {}
    }

    public java.util.Set<String> getInputNames() { return null; }
    public java.util.Map<String, NodeInfo> getInputInfo() throws OrtException { return null; }
    public OnnxModelMetadata getMetadata() throws OrtException { return null; }
    public Result run(java.util.Map<String, ? extends OnnxTensor> inputs) throws OrtException { return null; }
    @Override
    public void close() throws OrtException {}
}
