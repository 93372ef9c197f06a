package dev.edgeport.core;

import java.util.Map;
import java.util.Set;

/**
 * One forward pass of the exported decoder graph. On the phone this is an ORT Mobile {@code OrtSession} over
 * model.ort (app module, OrtDecoderSession); in the host test it is real onnxruntime behind a pipe.
 */
public interface DecoderSession extends AutoCloseable {
    /**
     * Names of the graph inputs (a graph without position_ids does not get one), including optional ones that
     * have a default (logits_to_keep: the graph computes only the last k rows of logits when fed k).
     */
    Set<String> inputNames();

    /** Whether input {@code name} is float16 (the latent cache of int4/int8 exports) rather than float32. */
    boolean isHalf(String name);

    /** Run the graph; returns every output by name. */
    Map<String, Tensor> run(Map<String, Tensor> feeds) throws Exception;

    @Override
    default void close() throws Exception {}
}
