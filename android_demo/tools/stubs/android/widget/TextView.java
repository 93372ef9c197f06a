package android.widget;

public class TextView extends android.view.View {
    public void setText(CharSequence text) {}
    public final void append(CharSequence text) {}
    public CharSequence getText() { return ""; }
}
