package dev.edgeport.core;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/**
 * Host-test {@link DecoderSession}: each run() is sent over a pipe to a Python process that runs the exported
 * graph in real onnxruntime (tests/test_android_demo.py). The feeds are exactly what the phone would hand to
 * OrtSession.run, so names, dtypes and shapes are checked against the real model.
 *
 * <p>Wire format, little endian: int32 count, then per tensor: int32 name length, UTF-8 name, int8 dtype
 * (ONNX codes: 1 = float32, 7 = int64, 10 = float16), int32 rank, int64 dims, raw values. The server first sends
 * the graph's inputs (int32 count, then int32 length + UTF-8 name + int8 dtype each). A count of -1 from Java ends
 * the session.
 */
final class PipeSession implements DecoderSession {
    private final DataInputStream in;
    private final DataOutputStream out;
    private final Set<String> inputs = new LinkedHashSet<>();
    private final Set<String> halfInputs = new LinkedHashSet<>();
    int calls;

    PipeSession(InputStream in, OutputStream out) throws IOException {
        this.in = new DataInputStream(in);
        this.out = new DataOutputStream(out);
        int n = readInt();
        for (int i = 0; i < n; i++) {
            String name = readString();
            inputs.add(name);
            if (this.in.readByte() == 10) halfInputs.add(name);
        }
    }

    @Override
    public boolean isHalf(String name) {
        return halfInputs.contains(name);
    }

    @Override
    public Set<String> inputNames() {
        return inputs;
    }

    @Override
    public Map<String, Tensor> run(Map<String, Tensor> feeds) throws IOException {
        calls++;
        writeInt(feeds.size());
        for (Map.Entry<String, Tensor> e : feeds.entrySet()) {
            Tensor t = e.getValue();
            byte[] name = e.getKey().getBytes(StandardCharsets.UTF_8);
            writeInt(name.length);
            out.write(name);
            out.writeByte(t.isFloat() ? 1 : t.isHalf() ? 10 : 7);
            writeInt(t.shape.length);
            ByteBuffer dims = ByteBuffer.allocate(8 * t.shape.length).order(ByteOrder.LITTLE_ENDIAN);
            for (long d : t.shape) dims.putLong(d);
            out.write(dims.array());
            ByteBuffer data;
            if (t.isFloat()) {
                data = ByteBuffer.allocate(4 * t.floats.length).order(ByteOrder.LITTLE_ENDIAN);
                data.asFloatBuffer().put(t.floats);
            } else if (t.isHalf()) {
                data = ByteBuffer.allocate(2 * t.halves.length).order(ByteOrder.LITTLE_ENDIAN);
                data.asShortBuffer().put(t.halves);
            } else {
                data = ByteBuffer.allocate(8 * t.longs.length).order(ByteOrder.LITTLE_ENDIAN);
                data.asLongBuffer().put(t.longs);
            }
            out.write(data.array());
        }
        out.flush();
        Map<String, Tensor> result = new HashMap<>();
        int n = readInt();
        if (n < 0) throw new IOException("onnxruntime failed: " + readString());
        for (int i = 0; i < n; i++) {
            String name = readString();
            int dtype = in.readByte();
            int rank = readInt();
            long[] shape = new long[rank];
            for (int k = 0; k < rank; k++) shape[k] = readLong();
            int count = (int) Tensor.numel(shape);
            byte[] raw = new byte[count * (dtype == 1 ? 4 : dtype == 10 ? 2 : 8)];
            in.readFully(raw);
            ByteBuffer bb = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
            if (dtype == 1) {
                float[] f = new float[count];
                bb.asFloatBuffer().get(f);
                result.put(name, Tensor.ofFloats(f, shape));
            } else if (dtype == 10) {
                short[] h = new short[count];
                bb.asShortBuffer().get(h);
                result.put(name, Tensor.ofHalves(h, shape));
            } else {
                long[] l = new long[count];
                bb.asLongBuffer().get(l);
                result.put(name, Tensor.ofLongs(l, shape));
            }
        }
        return result;
    }

    @Override
    public void close() throws IOException {
        writeInt(-1);
        out.flush();
    }

    private int readInt() throws IOException {
        return Integer.reverseBytes(in.readInt());
    }

    private long readLong() throws IOException {
        return Long.reverseBytes(in.readLong());
    }

    private String readString() throws IOException {
        byte[] b = new byte[readInt()];
        in.readFully(b);
        return new String(b, StandardCharsets.UTF_8);
    }

    private void writeInt(int v) throws IOException {
        out.writeInt(Integer.reverseBytes(v));
    }
}
