package dev.edgeport.core;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;

/**
 * Turns token bytes into text as they arrive. A byte-level BPE token can end in the middle of a UTF-8 character
 * (an emoji is often 2-4 tokens), so only complete characters are released; the rest waits for the next token.
 */
public final class Utf8Stream {
    private final ByteArrayOutputStream pending = new ByteArrayOutputStream();

    /** Append bytes; return the text of every character completed so far (maybe ""). */
    public String push(byte[] bytes) {
        pending.write(bytes, 0, bytes.length);
        byte[] b = pending.toByteArray();
        int cut = completePrefix(b);
        pending.reset();
        pending.write(b, cut, b.length - cut);
        return new String(b, 0, cut, StandardCharsets.UTF_8);
    }

    /** Whatever is left at the end of generation (invalid bytes become U+FFFD). */
    public String flush() {
        String s = new String(pending.toByteArray(), StandardCharsets.UTF_8);
        pending.reset();
        return s;
    }

    /** Length of the longest prefix that does not end inside a multi-byte sequence. */
    static int completePrefix(byte[] b) {
        int n = b.length;
        // Walk back over at most 3 continuation bytes to the last lead byte.
        for (int k = 1; k <= Math.min(4, n); k++) {
            int c = b[n - k] & 0xFF;
            if ((c & 0xC0) == 0x80) continue; // continuation byte
            int need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
            return k >= need ? n : n - k;
        }
        return n; // only continuation bytes: invalid, release them
    }
}
