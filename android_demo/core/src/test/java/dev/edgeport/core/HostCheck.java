package dev.edgeport.core;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Runs the app's core (no Android classes) on the host JVM for tests/test_android_demo.py. Modes:
 * <ul>
 *   <li>{@code selftest}: Json, Utf8Stream and argmax checks; prints "N passed, 0 failed".
 *   <li>{@code encode TOKENIZER_JSON TEXTS_JSON}: prints a JSON array of {"ids": [...], "decoded": "..."}.
 *   <li>{@code render MESSAGES_JSON}: prints the ChatPrompt text of a JSON list of {role, content} as a JSON string.
 *   <li>{@code chat MODEL_DIR TURNS_JSON MAX_NEW}: a multi-turn greedy chat through {@link LatentDecoder}; graph
 *       runs go over stdin/stdout ({@link PipeSession}); the JSON report goes to stderr's last line.
 * </ul>
 */
public final class HostCheck {
    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "selftest": selftest(); break;
            case "encode": encode(Paths.get(args[1]), Paths.get(args[2])); break;
            case "render": System.out.println(quote(ChatPrompt.render(messages(read(Paths.get(args[1])))))); break;
            case "chat": chat(Paths.get(args[1]), Paths.get(args[2]), Integer.parseInt(args[3])); break;
            default: throw new IllegalArgumentException("unknown mode " + args[0]);
        }
    }

    static String read(Path p) throws IOException {
        return new String(Files.readAllBytes(p), StandardCharsets.UTF_8);
    }

    static List<ChatPrompt.Message> messages(String json) {
        List<ChatPrompt.Message> out = new ArrayList<>();
        for (Object o : Json.arr(Json.parse(json))) {
            Map<String, Object> m = Json.obj(o);
            out.add(new ChatPrompt.Message((String) m.get("role"), (String) m.get("content")));
        }
        return out;
    }

    static void encode(Path tokenizerJson, Path texts) throws IOException {
        Tokenizer tok = new Tokenizer(read(tokenizerJson));
        StringBuilder b = new StringBuilder("[");
        for (Object o : Json.arr(Json.parse(read(texts)))) {
            List<Integer> ids = tok.encode((String) o);
            if (b.length() > 1) b.append(",");
            b.append("{\"ids\":").append(ids).append(",\"decoded\":").append(quote(tok.decode(ids))).append("}");
        }
        System.out.println(b.append("]"));
    }

    /** Turns: a JSON list of user messages. Each reply is appended to the conversation before the next turn. */
    static void chat(Path dir, Path turnsFile, int maxNew) throws Exception {
        PrintStream report = System.err;
        GenaiConfig cfg = new GenaiConfig(read(dir.resolve("genai_config.json")));
        Tokenizer tok = new Tokenizer(read(dir.resolve("tokenizer.json")));
        StringBuilder json = new StringBuilder("[");
        try (PipeSession session = new PipeSession(System.in, System.out)) {
            LatentDecoder dec = new LatentDecoder(session, cfg);
            List<ChatPrompt.Message> conv = new ArrayList<>();
            for (Object turn : Json.arr(Json.parse(read(turnsFile)))) {
                conv.add(new ChatPrompt.Message("user", (String) turn));
                List<Integer> prompt = tok.encode(ChatPrompt.render(conv));
                int cachedBefore = dec.cachedLength();
                int callsBefore = session.calls;
                StringBuilder streamed = new StringBuilder();
                List<Integer> ids = dec.generate(prompt, maxNew, cfg.eosIds, (id, text) -> streamed.append(text), tok);
                List<Integer> content = new ArrayList<>(ids);
                if (!content.isEmpty() && cfg.eosIds.contains(content.get(content.size() - 1))) {
                    content.remove(content.size() - 1);
                }
                String reply = tok.decode(content);
                conv.add(new ChatPrompt.Message("assistant", reply));
                if (json.length() > 1) json.append(",");
                json.append("{\"prompt\":").append(prompt).append(",\"ids\":").append(ids)
                        .append(",\"reply\":").append(quote(reply)).append(",\"streamed\":").append(quote(streamed.toString()))
                        .append(",\"cached_before\":").append(cachedBefore).append(",\"runs\":").append(session.calls - callsBefore)
                        .append(",\"cache_floats\":").append(dec.cacheFloats()).append(",\"cached_after\":").append(dec.cachedLength())
                        .append("}");
            }
        }
        report.println(json.append("]"));
    }

    static void selftest() {
        int passed = 0;
        // Utf8Stream: "é😀" byte by byte releases only whole characters.
        byte[] b = "aé😀".getBytes(StandardCharsets.UTF_8);
        Utf8Stream s = new Utf8Stream();
        StringBuilder got = new StringBuilder();
        List<String> pieces = new ArrayList<>();
        for (byte x : b) {
            String p = s.push(new byte[] {x});
            pieces.add(p);
            got.append(p);
        }
        check(got.toString().equals("aé😀"), "utf8 stream reassembles");
        check(pieces.get(1).isEmpty() && pieces.get(2).equals("é") && pieces.get(6).equals("😀"), "utf8 waits for whole chars");
        passed += 2;
        Object j = Json.parse("{\"a\": [1, 2.5, \"x\\n\\u00e9\"], \"b\": null, \"c\": true}");
        Map<String, Object> m = Json.obj(j);
        check(Json.arr(m.get("a")).get(0).equals(1L) && Json.arr(m.get("a")).get(2).equals("x\né"), "json values");
        check(m.containsKey("b") && m.get("b") == null && m.get("c").equals(Boolean.TRUE), "json literals");
        passed += 2;
        check(LatentDecoder.argmax(new float[] {0f, 3f, 3f, -1f}) == 1, "argmax takes the first maximum");
        passed += 1;
        System.out.println(passed + " passed, 0 failed");
    }

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError("failed: " + what);
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }
}
