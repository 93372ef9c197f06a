package dev.edgeport.core;

/** Streaming callback: called on the decoding thread once per generated token, with its complete UTF-8 text. */
public interface TokenListener {
    void onToken(int id, String text);
}
