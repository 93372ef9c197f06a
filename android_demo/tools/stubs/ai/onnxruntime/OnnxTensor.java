package ai.onnxruntime;

public class OnnxTensor implements OnnxValue {
    public static OnnxTensor createTensor(OrtEnvironment env, java.nio.FloatBuffer data, long[] shape) throws OrtException { return null; }
    public static OnnxTensor createTensor(OrtEnvironment env, java.nio.LongBuffer data, long[] shape) throws OrtException { return null; }
    public static OnnxTensor createTensor(OrtEnvironment env, java.nio.ByteBuffer data, long[] shape, OnnxJavaType type) throws OrtException { return null; }
    public java.nio.FloatBuffer getFloatBuffer() { return null; }
    public java.nio.ShortBuffer getShortBuffer() { return null; }
    public TensorInfo getInfo() { return null; }
    @Override
    public void close() {}
}
