package dev.edgeport.core;

import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Greedy decoding over the exported graph with the MLA latent cache, the same loop as the Python reference
 * (YoutuForCausalLM.generate): prefill the prompt, then feed one token at a time, passing each layer's
 * present.N.key / present.N.value (the two halves of the latent, [1, kv_heads, T, head_size]) back in as
 * past_key_values.N.key / .value. The cache is kept in the graph's own type (float32, or float16 for int4/int8
 * exports, whose halves are stored and fed back as raw bits) and never converted.
 *
 * <p>The cache survives between calls: a new prompt that starts with the tokens already cached (the next chat
 * turn) only runs its new suffix; otherwise the cache is cut back to the common prefix.
 */
public final class LatentDecoder {
    /** Optional int64 scalar input of edgeport exports: compute only the last k rows of logits (0 = all). */
    public static final String LOGITS_TO_KEEP = "logits_to_keep";

    private final DecoderSession session;
    private final GenaiConfig cfg;
    private final boolean half; // the graph's cache is float16
    private final Tensor[] keys;
    private final Tensor[] values;
    private final List<Integer> cached = new ArrayList<>(); // token ids whose latents are in the cache
    private volatile boolean stopRequested;

    public LatentDecoder(DecoderSession session, GenaiConfig cfg) {
        this.session = session;
        this.cfg = cfg;
        this.half = session.isHalf(String.format(cfg.pastKey, 0));
        this.keys = new Tensor[cfg.numLayers];
        this.values = new Tensor[cfg.numLayers];
        reset();
    }

    public void reset() {
        cached.clear();
        for (int l = 0; l < cfg.numLayers; l++) {
            keys[l] = empty();
            values[l] = empty();
        }
    }

    /** Ask a running {@link #generate} to return after the current token (safe from any thread). */
    public void stop() {
        stopRequested = true;
    }

    public int cachedLength() {
        return cached.size();
    }

    /** Latent values held right now (keys + values, all layers): cachedLength * layers * latentWidth. */
    public long cacheFloats() {
        long n = 0;
        for (int l = 0; l < cfg.numLayers; l++) n += Tensor.numel(keys[l].shape) + Tensor.numel(values[l].shape);
        return n;
    }

    /** Bytes per cached value: 2 for a float16 cache, 4 for float32. */
    public int cacheValueBytes() {
        return half ? 2 : 4;
    }

    private Tensor empty() {
        long[] shape = {1, cfg.kvHeads, 0, cfg.headSize};
        return half ? Tensor.ofHalves(new short[0], shape) : Tensor.ofFloats(new float[0], shape);
    }

    /**
     * Greedy continuation of {@code prompt}: new token ids only, ending with the stop token if one was hit.
     * {@code listener} (may be null) sees each token as soon as it is chosen.
     */
    public List<Integer> generate(List<Integer> prompt, int maxNewTokens, Collection<Integer> stopIds,
                                  TokenListener listener, Tokenizer tokenizer) throws Exception {
        stopRequested = false;
        int p = 0;
        while (p < cached.size() && p < prompt.size() - 1 && cached.get(p).equals(prompt.get(p))) p++;
        truncate(p); // always re-run at least the last prompt token: we need its logits
        Utf8Stream utf8 = new Utf8Stream();
        List<Integer> out = new ArrayList<>();
        float[] logits = forward(prompt.subList(p, prompt.size()));
        for (int step = 0; step < maxNewTokens && !stopRequested; step++) {
            int next = argmax(logits);
            out.add(next);
            if (listener != null) {
                String text = tokenizer == null ? "" : utf8.push(tokenizer.tokenBytes(next));
                listener.onToken(next, text);
            }
            if (stopIds.contains(next) || step == maxNewTokens - 1) break;
            logits = forward(java.util.Collections.singletonList(next));
        }
        if (listener != null && tokenizer != null) {
            String rest = utf8.flush();
            if (!rest.isEmpty()) listener.onToken(-1, rest);
        }
        return out;
    }

    /** Run `ids` on top of the cache; returns the logits of the last position and extends the cache. */
    public float[] forward(List<Integer> ids) throws Exception {
        int past = cached.size();
        int s = ids.size();
        long[] inputIds = new long[s];
        long[] positions = new long[s];
        for (int j = 0; j < s; j++) {
            inputIds[j] = ids.get(j);
            positions[j] = past + j;
        }
        long[] mask = new long[past + s];
        java.util.Arrays.fill(mask, 1L);
        Map<String, Tensor> feeds = new HashMap<>();
        feeds.put(cfg.inputIds, Tensor.ofLongs(inputIds, 1, s));
        if (session.inputNames().contains(cfg.attentionMask)) feeds.put(cfg.attentionMask, Tensor.ofLongs(mask, 1, past + s));
        if (session.inputNames().contains(cfg.positionIds)) feeds.put(cfg.positionIds, Tensor.ofLongs(positions, 1, s));
        // only the last position's logits are used: a graph that can skip the other rows' lm_head is told so
        if (session.inputNames().contains(LOGITS_TO_KEEP)) feeds.put(LOGITS_TO_KEEP, Tensor.ofLongs(new long[] {1}));
        for (int l = 0; l < cfg.numLayers; l++) {
            feeds.put(String.format(cfg.pastKey, l), keys[l]);
            feeds.put(String.format(cfg.pastValue, l), values[l]);
        }
        Map<String, Tensor> outs = session.run(feeds);
        for (int l = 0; l < cfg.numLayers; l++) {
            keys[l] = present(outs, String.format(cfg.presentKey, l), past + s);
            values[l] = present(outs, String.format(cfg.presentValue, l), past + s);
        }
        cached.addAll(ids);
        Tensor lg = outs.get(cfg.logits);
        if (lg == null) throw new IllegalStateException("graph has no output " + cfg.logits);
        int vocab = (int) lg.shape[lg.shape.length - 1];
        float[] last = new float[vocab];
        System.arraycopy(lg.floats, lg.floats.length - vocab, last, 0, vocab);
        return last;
    }

    private Tensor present(Map<String, Tensor> outs, String name, int total) {
        Tensor t = outs.get(name);
        if (t == null) throw new IllegalStateException("graph has no output " + name);
        long[] want = {1, cfg.kvHeads, total, cfg.headSize};
        if (!java.util.Arrays.equals(t.shape, want)) {
            throw new IllegalStateException(name + " has shape " + java.util.Arrays.toString(t.shape)
                    + ", expected " + java.util.Arrays.toString(want));
        }
        if (t.isHalf() != half) throw new IllegalStateException(name + " is " + t + ", past is " + keys[0]);
        return t;
    }

    /** Keep only the first n cached positions (per head: the first n rows of head_size floats). */
    private void truncate(int n) {
        int past = cached.size();
        if (n == past) return;
        for (int l = 0; l < cfg.numLayers; l++) {
            keys[l] = cut(keys[l], past, n);
            values[l] = cut(values[l], past, n);
        }
        cached.subList(n, past).clear();
    }

    private Tensor cut(Tensor a, int past, int n) {
        Object src = half ? a.halves : a.floats;
        Object r = half ? new short[cfg.kvHeads * n * cfg.headSize] : new float[cfg.kvHeads * n * cfg.headSize];
        for (int h = 0; h < cfg.kvHeads; h++) {
            System.arraycopy(src, h * past * cfg.headSize, r, h * n * cfg.headSize, n * cfg.headSize);
        }
        long[] shape = {1, cfg.kvHeads, n, cfg.headSize};
        return half ? Tensor.ofHalves((short[]) r, shape) : Tensor.ofFloats((float[]) r, shape);
    }

    /** Index of the largest logit; the first one on ties (torch.argmax / numpy.argmax agree). */
    public static int argmax(float[] x) {
        int best = 0;
        for (int i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
