package dev.edgeport.core;

import java.util.ArrayList;
import java.util.List;

/**
 * The Youtu-LLM chat template (no tools, thinking off), as edgeport.chat.render(messages,
 * add_generation_prompt=True, enable_thinking=False) renders it: BOS, system text, {@code <|User|>} turns,
 * {@code <|Assistant|>} turns closed by EOS, then {@code <|Assistant|><think>\n\n</think>\n\n}.
 */
public final class ChatPrompt {
    public static final String BOS = "<|begin_of_text|>";
    public static final String EOS = "<|end_of_text|>";
    public static final String USER = "<|User|>";
    public static final String ASSISTANT = "<|Assistant|>";
    public static final String EMPTY_THINK = "<think>\n\n</think>\n\n";

    public static final class Message {
        public final String role; // "system", "user" or "assistant"
        public final String content;

        public Message(String role, String content) {
            this.role = role;
            this.content = content;
        }
    }

    private ChatPrompt() {}

    public static String render(List<Message> messages) {
        StringBuilder b = new StringBuilder(BOS);
        List<String> system = new ArrayList<>();
        for (Message m : messages) if (m.role.equals("system")) system.add(m.content);
        b.append(String.join("\n\n", system));
        boolean open = false;
        for (int i = 0; i < messages.size(); i++) {
            Message m = messages.get(i);
            boolean last = i == messages.size() - 1;
            if (m.role.equals("user")) {
                b.append(USER).append(m.content);
                open = true;
            } else if (m.role.equals("assistant")) {
                String c = m.content;
                int k = c.lastIndexOf("</think>");
                if (k >= 0 && !last) { // earlier turns drop their reasoning
                    c = c.substring(k + "</think>".length());
                    while (c.startsWith("\n")) c = c.substring(1);
                }
                if (last && !c.contains("<think>") && !c.contains("</think>")) c = EMPTY_THINK + c;
                b.append(ASSISTANT).append(c).append(EOS);
                open = false;
            }
        }
        if (open) b.append(ASSISTANT).append(EMPTY_THINK); // the generation prompt, thinking off
        return b.toString();
    }
}
