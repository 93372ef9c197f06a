package dev.edgeport.core;

import java.nio.charset.StandardCharsets;
import java.text.Normalizer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Byte-level BPE read from a Hugging Face tokenizer.json (the file `edgeport export` ships): added/special
 * tokens, an optional NFC normalizer, Split(regex) and ByteLevel pre-tokenizers, BPE merges by rank. Pure Java,
 * so the phone needs no native tokenizer; the host test checks its ids against the `tokenizers` library.
 */
public final class Tokenizer {
    private final Map<String, Integer> vocab = new HashMap<>();
    private final Map<Integer, String> idToToken = new HashMap<>();
    private final Map<String, Integer> mergeRank = new HashMap<>();
    private final LinkedHashMap<String, Integer> added = new LinkedHashMap<>(); // content -> id, longest first
    private final List<Pattern> splits = new ArrayList<>();
    private final boolean nfc;
    private final boolean ignoreMerges;
    private final boolean addPrefixSpace;
    private final Map<String, List<Integer>> wordCache = new HashMap<>();
    private static final char[] BYTE_TO_CHAR = new char[256];
    private static final Map<Character, Integer> CHAR_TO_BYTE = new HashMap<>();
    static final String GPT2_PATTERN =
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

    static {
        // GPT-2's reversible byte -> printable unicode map.
        int n = 0;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            BYTE_TO_CHAR[b] = printable ? (char) b : (char) (256 + n++);
            CHAR_TO_BYTE.put(BYTE_TO_CHAR[b], b);
        }
    }

    public Tokenizer(String tokenizerJson) {
        Map<String, Object> root = Json.obj(Json.parse(tokenizerJson));
        Map<String, Object> model = Json.obj(root.get("model"));
        if (!"BPE".equals(model.get("type"))) throw new IllegalArgumentException("tokenizer.json: model is not BPE");
        for (Map.Entry<String, Object> e : Json.obj(model.get("vocab")).entrySet()) {
            int id = ((Number) e.getValue()).intValue();
            vocab.put(e.getKey(), id);
            idToToken.put(id, e.getKey());
        }
        int rank = 0;
        for (Object m : Json.arr(model.get("merges"))) {
            String pair = m instanceof String ? (String) m : Json.arr(m).get(0) + " " + Json.arr(m).get(1);
            mergeRank.put(pair, rank++);
        }
        ignoreMerges = Boolean.TRUE.equals(model.get("ignore_merges"));
        List<Map<String, Object>> addedList = new ArrayList<>();
        if (root.get("added_tokens") != null) for (Object o : Json.arr(root.get("added_tokens"))) addedList.add(Json.obj(o));
        addedList.sort((a, b) -> ((String) b.get("content")).length() - ((String) a.get("content")).length());
        for (Map<String, Object> a : addedList) {
            int id = ((Number) a.get("id")).intValue();
            added.put((String) a.get("content"), id);
            idToToken.put(id, (String) a.get("content"));
        }
        Object norm = root.get("normalizer");
        nfc = norm != null && Json.obj(norm).toString().contains("NFC");
        boolean[] prefix = {false};
        if (root.get("pre_tokenizer") != null) readPreTokenizer(Json.obj(root.get("pre_tokenizer")), prefix);
        addPrefixSpace = prefix[0];
    }

    private void readPreTokenizer(Map<String, Object> p, boolean[] prefix) {
        String type = (String) p.get("type");
        if ("Sequence".equals(type)) {
            for (Object o : Json.arr(p.get("pretokenizers"))) readPreTokenizer(Json.obj(o), prefix);
        } else if ("Split".equals(type)) {
            Map<String, Object> pat = Json.obj(p.get("pattern"));
            String re = pat.containsKey("Regex") ? (String) pat.get("Regex") : Pattern.quote((String) pat.get("String"));
            if (!"Isolated".equals(p.get("behavior")) || Boolean.TRUE.equals(p.get("invert"))) {
                throw new IllegalArgumentException("tokenizer.json: only Isolated, non-inverted Split is supported");
            }
            splits.add(Pattern.compile(re, Pattern.UNICODE_CHARACTER_CLASS));
        } else if ("ByteLevel".equals(type)) {
            prefix[0] = Boolean.TRUE.equals(p.get("add_prefix_space"));
            if (!Boolean.FALSE.equals(p.get("use_regex"))) splits.add(Pattern.compile(GPT2_PATTERN, Pattern.UNICODE_CHARACTER_CLASS));
        } else {
            throw new IllegalArgumentException("tokenizer.json: unsupported pre_tokenizer " + type);
        }
    }

    public int vocabSize() {
        return idToToken.size();
    }

    /** Id of a token string (a special token such as "<|end_of_text|>" or a byte-level vocab entry), or -1. */
    public int tokenToId(String token) {
        Integer id = added.containsKey(token) ? added.get(token) : vocab.get(token);
        return id == null ? -1 : id;
    }

    /** Encode text; special/added tokens written in the text become their ids. No BOS is added. */
    public List<Integer> encode(String text) {
        List<Integer> out = new ArrayList<>();
        int start = 0;
        int i = 0;
        while (i < text.length()) {
            String hit = null;
            for (String a : added.keySet()) {
                if (text.startsWith(a, i)) {
                    hit = a;
                    break;
                }
            }
            if (hit == null) {
                i++;
                continue;
            }
            encodeOrdinary(text.substring(start, i), out);
            out.add(added.get(hit));
            i += hit.length();
            start = i;
        }
        encodeOrdinary(text.substring(start), out);
        return out;
    }

    private void encodeOrdinary(String text, List<Integer> out) {
        if (text.isEmpty()) return;
        if (nfc) text = Normalizer.normalize(text, Normalizer.Form.NFC);
        if (addPrefixSpace && !text.startsWith(" ")) text = " " + text;
        List<String> pieces = new ArrayList<>();
        pieces.add(text);
        for (Pattern p : splits) {
            List<String> next = new ArrayList<>();
            for (String piece : pieces) split(p, piece, next);
            pieces = next;
        }
        for (String piece : pieces) {
            StringBuilder b = new StringBuilder();
            for (byte x : piece.getBytes(StandardCharsets.UTF_8)) b.append(BYTE_TO_CHAR[x & 0xFF]);
            out.addAll(bpe(b.toString()));
        }
    }

    /** Isolated split: matches and the gaps between them both become pieces. */
    private static void split(Pattern p, String s, List<String> out) {
        Matcher m = p.matcher(s);
        int last = 0;
        while (m.find()) {
            if (m.end() == m.start()) continue;
            if (m.start() > last) out.add(s.substring(last, m.start()));
            out.add(m.group());
            last = m.end();
        }
        if (last < s.length()) out.add(s.substring(last));
    }

    private List<Integer> bpe(String word) {
        List<Integer> hit = wordCache.get(word);
        if (hit != null) return hit;
        List<Integer> ids = new ArrayList<>();
        if (ignoreMerges && vocab.containsKey(word)) {
            ids.add(vocab.get(word));
        } else {
            List<String> sym = new ArrayList<>();
            for (int i = 0; i < word.length(); i++) sym.add(String.valueOf(word.charAt(i)));
            while (sym.size() > 1) {
                int best = -1;
                int bestRank = Integer.MAX_VALUE;
                for (int i = 0; i + 1 < sym.size(); i++) {
                    Integer r = mergeRank.get(sym.get(i) + " " + sym.get(i + 1));
                    if (r != null && r < bestRank) {
                        bestRank = r;
                        best = i;
                    }
                }
                if (best < 0) break;
                sym.set(best, sym.get(best) + sym.remove(best + 1));
            }
            for (String s : sym) {
                Integer id = vocab.get(s);
                if (id == null) throw new IllegalArgumentException("tokenizer.json: no vocab entry for " + s);
                ids.add(id);
            }
        }
        wordCache.put(word, ids);
        return ids;
    }

    /** The raw bytes a token stands for (special tokens: their text). Feed these to a {@link Utf8Stream}. */
    public byte[] tokenBytes(int id) {
        String t = idToToken.get(id);
        if (t == null) return new byte[0];
        if (added.containsKey(t) && !vocab.containsKey(t)) return t.getBytes(StandardCharsets.UTF_8);
        byte[] b = new byte[t.length()];
        for (int i = 0; i < t.length(); i++) {
            Integer x = CHAR_TO_BYTE.get(t.charAt(i));
            if (x == null) return t.getBytes(StandardCharsets.UTF_8);
            b[i] = (byte) (int) x;
        }
        return b;
    }

    public String decode(List<Integer> ids) {
        java.io.ByteArrayOutputStream b = new java.io.ByteArrayOutputStream();
        for (int id : ids) {
            byte[] x = tokenBytes(id);
            b.write(x, 0, x.length);
        }
        return new String(b.toByteArray(), StandardCharsets.UTF_8);
    }
}
