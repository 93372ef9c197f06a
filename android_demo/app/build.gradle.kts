plugins {
    id("com.android.application")
}

android {
    namespace = "dev.edgeport.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.edgeport.demo"
        minSdk = 28
        targetSdk = 35
        versionCode = 1
        versionName = "0.1"
        ndk { abiFilters += listOf("arm64-v8a", "x86_64") }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_1_8
        targetCompatibility = JavaVersion.VERSION_1_8
    }

    // The pure-Java core (decoding loop, tokenizer, chat prompt) is shared with the host tests.
    sourceSets["main"].java.srcDirs("src/main/java", "../core/src/main/java")

    // Models are read from assets as bytes; keep them uncompressed in the APK.
    androidResources { noCompress += listOf("ort", "onnx") }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
}

dependencies {
    // ORT Mobile: the full onnxruntime-android package (all ONNX + contrib ops, loads .ort and .onnx). The version
    // is gradle.properties' edgeport.onnxruntimeVersion, the one tests/test_mobile_compat.py proves the exports load on.
    val ortVersion = providers.gradleProperty("edgeport.onnxruntimeVersion").get()
    implementation("com.microsoft.onnxruntime:onnxruntime-android:$ortVersion")
}
