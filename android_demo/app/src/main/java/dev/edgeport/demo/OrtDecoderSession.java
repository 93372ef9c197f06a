package dev.edgeport.demo;

import ai.onnxruntime.NodeInfo;
import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;
import dev.edgeport.core.DecoderSession;
import dev.edgeport.core.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.LongBuffer;
import java.nio.ShortBuffer;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/** {@link DecoderSession} over ORT Mobile (onnxruntime-android): one OrtSession on model.ort, CPU EP. */
final class OrtDecoderSession implements DecoderSession {
    private final OrtEnvironment env = OrtEnvironment.getEnvironment();
    private final OrtSession session;
    private final Set<String> inputs;

    /** From a file (the adb-push route) or, if {@code bytes} is given, from the model's bytes (the asset route). */
    OrtDecoderSession(String path, byte[] bytes, int threads) throws OrtException {
        OrtSession.SessionOptions opts = new OrtSession.SessionOptions();
        opts.setIntraOpNumThreads(threads);
        boolean ort = (path != null && path.endsWith(".ort")) || bytes != null;
        if (ort) opts.addConfigEntry("session.load_model_format", "ORT");
        session = bytes != null ? env.createSession(bytes, opts) : env.createSession(path, opts);
        // getInputNames() leaves out inputs that have a default (ONNX initializers); the export lists the ones
        // worth feeding in its metadata (edgeport.optional_inputs, e.g. logits_to_keep)
        inputs = new LinkedHashSet<>(session.getInputNames());
        String optional = session.getMetadata().getCustomMetadata().get("edgeport.optional_inputs");
        if (optional != null && !optional.isEmpty()) inputs.addAll(Arrays.asList(optional.split(",")));
    }

    @Override
    public Set<String> inputNames() {
        return inputs;
    }

    @Override
    public boolean isHalf(String name) {
        try {
            NodeInfo info = session.getInputInfo().get(name);
            return info != null && info.getInfo() instanceof TensorInfo
                    && ((TensorInfo) info.getInfo()).type == OnnxJavaType.FLOAT16;
        } catch (OrtException e) {
            throw new IllegalStateException(e);
        }
    }

    @Override
    public Map<String, Tensor> run(Map<String, Tensor> feeds) throws OrtException {
        Map<String, OnnxTensor> in = new HashMap<>();
        try {
            for (Map.Entry<String, Tensor> e : feeds.entrySet()) {
                Tensor t = e.getValue();
                if (t.isHalf()) { // float16 bits, handed over as bytes in native order
                    ByteBuffer b = ByteBuffer.allocateDirect(2 * t.halves.length).order(ByteOrder.nativeOrder());
                    b.asShortBuffer().put(t.halves);
                    in.put(e.getKey(), OnnxTensor.createTensor(env, b, t.shape, OnnxJavaType.FLOAT16));
                } else {
                    in.put(e.getKey(), t.isFloat()
                            ? OnnxTensor.createTensor(env, FloatBuffer.wrap(t.floats), t.shape)
                            : OnnxTensor.createTensor(env, LongBuffer.wrap(t.longs), t.shape));
                }
            }
            Map<String, Tensor> out = new HashMap<>();
            try (OrtSession.Result result = session.run(in)) {
                for (Map.Entry<String, OnnxValue> e : result) {
                    OnnxTensor v = (OnnxTensor) e.getValue();
                    if (v.getInfo().type == OnnxJavaType.FLOAT16) { // the latent cache: kept as bits
                        ShortBuffer sb = v.getShortBuffer();
                        short[] h = new short[sb.remaining()];
                        sb.get(h);
                        out.put(e.getKey(), Tensor.ofHalves(h, v.getInfo().getShape()));
                        continue;
                    }
                    FloatBuffer fb = v.getFloatBuffer();
                    float[] f = new float[fb.remaining()];
                    fb.get(f);
                    out.put(e.getKey(), Tensor.ofFloats(f, v.getInfo().getShape()));
                }
            }
            return out;
        } finally {
            for (OnnxTensor t : in.values()) t.close();
        }
    }

    @Override
    public void close() throws OrtException {
        session.close();
    }
}
