package android.app;

public class Activity {
    protected void onCreate(android.os.Bundle savedInstanceState) {}
    protected void onDestroy() {}
    public void setContentView(int layoutResID) {}
    public <T extends android.view.View> T findViewById(int id) { return null; }
    public final void runOnUiThread(Runnable action) {}
    public java.io.File getExternalFilesDir(String type) { return null; }
    public android.content.res.AssetManager getAssets() { return null; }
    public final String getString(int resId, Object... formatArgs) { return ""; }
}
