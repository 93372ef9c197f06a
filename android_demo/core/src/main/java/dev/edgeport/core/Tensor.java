package dev.edgeport.core;

import java.util.Arrays;

/**
 * A dense row-major tensor holding float32, float16 (raw IEEE half bits: the latent cache of int4/int8 exports,
 * which the Java side only stores and feeds back) or int64 values; the currency of {@link DecoderSession}.
 */
public final class Tensor {
    public final long[] shape;
    public final float[] floats; // set for float32 tensors
    public final short[] halves; // set for float16 tensors (bits, not converted)
    public final long[] longs; // set for int64 tensors

    private Tensor(long[] shape, float[] floats, short[] halves, long[] longs) {
        this.shape = shape;
        this.floats = floats;
        this.halves = halves;
        this.longs = longs;
        long n = numel(shape);
        long have = floats != null ? floats.length : halves != null ? halves.length : longs.length;
        if (n != have) throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " needs " + n + " values, got " + have);
    }

    public static Tensor ofFloats(float[] data, long... shape) {
        return new Tensor(shape, data, null, null);
    }

    public static Tensor ofHalves(short[] data, long... shape) {
        return new Tensor(shape, null, data, null);
    }

    public static Tensor ofLongs(long[] data, long... shape) {
        return new Tensor(shape, null, null, data);
    }

    public boolean isFloat() {
        return floats != null;
    }

    public boolean isHalf() {
        return halves != null;
    }

    public static long numel(long[] shape) {
        long n = 1;
        for (long d : shape) n *= d;
        return n;
    }

    @Override
    public String toString() {
        return (isFloat() ? "float32" : isHalf() ? "float16" : "int64") + Arrays.toString(shape);
    }
}
