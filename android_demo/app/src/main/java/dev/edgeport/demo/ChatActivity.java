package dev.edgeport.demo;

import android.app.Activity;
import android.os.Bundle;
import android.view.View;
import android.widget.Button;
import android.widget.EditText;
import android.widget.ScrollView;
import android.widget.TextView;
import dev.edgeport.core.ChatPrompt;
import dev.edgeport.core.GenaiConfig;
import dev.edgeport.core.LatentDecoder;
import dev.edgeport.core.Tokenizer;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * One-screen offline chat. The model comes from {@code getExternalFilesDir("model")} when a model was pushed
 * there (adb push route, any size), else from the APK's {@code assets/model} (prepare_assets.py). All model
 * work runs on one background thread; each token's text is posted to the UI thread as it is generated.
 */
public final class ChatActivity extends Activity {
    private static final int MAX_NEW_TOKENS = 256;
    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private final List<ChatPrompt.Message> messages = new ArrayList<>();
    private TextView status;
    private TextView transcript;
    private ScrollView scroll;
    private EditText input;
    private Button send;
    private GenaiConfig cfg;
    private Tokenizer tokenizer;
    private OrtDecoderSession session;
    private LatentDecoder decoder;

    @Override
    protected void onCreate(Bundle saved) {
        super.onCreate(saved);
        setContentView(R.layout.activity_chat);
        status = (TextView) findViewById(R.id.status);
        transcript = (TextView) findViewById(R.id.transcript);
        scroll = (ScrollView) findViewById(R.id.scroll);
        input = (EditText) findViewById(R.id.input);
        send = (Button) findViewById(R.id.send);
        send.setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                onSend();
            }
        });
        findViewById(R.id.reset).setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                onReset();
            }
        });
        worker.execute(new Runnable() {
            @Override
            public void run() {
                load();
            }
        });
    }

    private void load() {
        try {
            File pushed = getExternalFilesDir("model");
            boolean fromFiles = pushed != null && new File(pushed, "genai_config.json").isFile();
            cfg = new GenaiConfig(text(fromFiles, pushed, "genai_config.json"));
            tokenizer = new Tokenizer(text(fromFiles, pushed, "tokenizer.json"));
            int threads = Math.max(1, Math.min(4, Runtime.getRuntime().availableProcessors()));
            session = fromFiles
                    ? new OrtDecoderSession(new File(pushed, cfg.filename).getPath(), null, threads)
                    : new OrtDecoderSession(null, bytes(getAssets().open("model/" + cfg.filename)), threads);
            decoder = new LatentDecoder(session, cfg);
            final String where = (fromFiles ? pushed.getPath() : "assets/model") + "/" + cfg.filename;
            runOnUiThread(new Runnable() {
                @Override
                public void run() {
                    status.setText(getString(R.string.ready, where));
                    send.setEnabled(true);
                }
            });
        } catch (final Exception e) {
            showStatus("cannot load the model: " + e.getMessage());
        }
    }

    private void onSend() {
        final String text = input.getText().toString().trim();
        if (text.isEmpty()) return;
        input.setText("");
        send.setEnabled(false);
        transcript.append("\nyou: " + text + "\nmodel: ");
        worker.execute(new Runnable() {
            @Override
            public void run() {
                reply(text);
            }
        });
    }

    /** The agent-free chat turn: render, tokenize, greedy-decode with the latent cache, stream to the screen. */
    private void reply(String text) {
        try {
            messages.add(new ChatPrompt.Message("user", text));
            List<Integer> prompt = tokenizer.encode(ChatPrompt.render(messages));
            while (prompt.size() + MAX_NEW_TOKENS > cfg.contextLength && messages.size() > 2) {
                messages.remove(0); // drop the oldest exchange to stay inside the context window
                messages.remove(0);
                prompt = tokenizer.encode(ChatPrompt.render(messages));
            }
            int budget = Math.max(1, Math.min(MAX_NEW_TOKENS, cfg.contextLength - prompt.size()));
            List<Integer> ids = decoder.generate(prompt, budget, cfg.eosIds, (id, piece) -> {
                if (!piece.isEmpty()) {
                    runOnUiThread(new Runnable() {
                        @Override
                        public void run() {
                            transcript.append(piece);
                            scroll.post(new Runnable() {
                                @Override
                                public void run() {
                                    scroll.fullScroll(View.FOCUS_DOWN);
                                }
                            });
                        }
                    });
                }
            }, tokenizer);
            List<Integer> content = new ArrayList<>();
            for (int id : ids) if (!cfg.eosIds.contains(id)) content.add(id);
            messages.add(new ChatPrompt.Message("assistant", tokenizer.decode(content)));
        } catch (Exception e) {
            showStatus("generation failed: " + e.getMessage());
        }
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                send.setEnabled(true);
            }
        });
    }

    private void onReset() {
        worker.execute(new Runnable() {
            @Override
            public void run() {
                messages.clear();
                if (decoder != null) decoder.reset();
            }
        });
        transcript.setText("");
    }

    private void showStatus(final String s) {
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                status.setText(s);
            }
        });
    }

    private String text(boolean fromFiles, File dir, String name) throws IOException {
        InputStream in = fromFiles ? new FileInputStream(new File(dir, name)) : getAssets().open("model/" + name);
        return new String(bytes(in), StandardCharsets.UTF_8);
    }

    private static byte[] bytes(InputStream in) throws IOException {
        try {
            ByteArrayOutputStream b = new ByteArrayOutputStream();
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) b.write(buf, 0, n);
            return b.toByteArray();
        } finally {
            in.close();
        }
    }

    @Override
    protected void onDestroy() {
        if (decoder != null) decoder.stop(); // ends a running generate() after its current token
        worker.execute(new Runnable() { // close on the worker, after whatever it is running
            @Override
            public void run() {
                try {
                    if (session != null) session.close();
                } catch (Exception ignored) {
                    // closing on exit: nothing left to do
                }
            }
        });
        worker.shutdown();
        super.onDestroy();
    }
}
