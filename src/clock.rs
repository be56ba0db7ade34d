//! The one clock: monotonic seconds since an arbitrary origin, `std::time::Instant` natively
//! and `Date.now()` in the browser (wasm32 has no `std::time`).

/// Monotonic seconds (milliseconds resolution in the browser).
pub fn now_s() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64()
    }
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now() / 1000.0
    }
}
