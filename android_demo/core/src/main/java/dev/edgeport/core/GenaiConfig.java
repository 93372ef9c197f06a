package dev.edgeport.core;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The parts of an `edgeport export onnx` genai_config.json the on-device decoding loop needs: file name, I/O
 * names, cache geometry (the MLA latent is exposed as equal key/value halves), and the stop tokens.
 */
public final class GenaiConfig {
    public final String filename;
    public final int numLayers;
    public final int kvHeads;
    public final int headSize;
    public final int vocabSize;
    public final int contextLength;
    public final int bosId;
    public final List<Integer> eosIds = new ArrayList<>();
    public final String inputIds;
    public final String attentionMask;
    public final String positionIds;
    public final String pastKey;
    public final String pastValue;
    public final String logits;
    public final String presentKey;
    public final String presentValue;

    public GenaiConfig(String jsonText) {
        Map<String, Object> model = Json.obj(Json.obj(Json.parse(jsonText)).get("model"));
        Map<String, Object> dec = Json.obj(model.get("decoder"));
        Map<String, Object> in = Json.obj(dec.get("inputs"));
        Map<String, Object> out = Json.obj(dec.get("outputs"));
        filename = (String) dec.get("filename");
        numLayers = num(dec, "num_hidden_layers");
        kvHeads = num(dec, "num_key_value_heads");
        headSize = num(dec, "head_size");
        vocabSize = num(model, "vocab_size");
        contextLength = num(model, "context_length");
        bosId = model.get("bos_token_id") == null ? -1 : num(model, "bos_token_id");
        Object eos = model.get("eos_token_id");
        if (eos instanceof List) {
            for (Object o : Json.arr(eos)) eosIds.add(((Number) o).intValue());
        } else if (eos != null) {
            eosIds.add(((Number) eos).intValue());
        }
        inputIds = str(in, "input_ids", "input_ids");
        attentionMask = str(in, "attention_mask", "attention_mask");
        positionIds = str(in, "position_ids", "position_ids");
        pastKey = str(in, "past_key_names", "past_key_values.%d.key");
        pastValue = str(in, "past_value_names", "past_key_values.%d.value");
        logits = str(out, "logits", "logits");
        presentKey = str(out, "present_key_names", "present.%d.key");
        presentValue = str(out, "present_value_names", "present.%d.value");
    }

    /** Latent floats cached per token per layer (kv_lora_rank + qk_rope_head_dim), stored as two halves. */
    public int latentWidth() {
        return 2 * kvHeads * headSize;
    }

    private static int num(Map<String, Object> m, String k) {
        Object v = m.get(k);
        if (!(v instanceof Number)) throw new IllegalArgumentException("genai_config.json: missing number " + k);
        return ((Number) v).intValue();
    }

    private static String str(Map<String, Object> m, String k, String dflt) {
        Object v = m.get(k);
        return v == null ? dflt : (String) v;
    }
}
