//! Changing a llama.cpp context's thread count between decode steps.
//!
//! llama.cpp has `llama_set_n_threads`, which takes effect at the next decode, but
//! `llama-cpp-2` 0.1.160 does not wrap it and keeps the context pointer private. Its
//! `Debug` output prints that pointer (`LlamaContext { context: 0x… }`), so the
//! pointer is read from there, once, and checked against the context before any use:
//! the context size, batch size and thread count llama.cpp reports through it must
//! be the ones the safe wrapper reports. If the format ever changes (the crate is
//! pinned exactly for this), the check fails and the engine keeps its configured
//! thread count: slower beside a busy neighbour, never wrong.
//!
//! The `unsafe` here: three reads and one store through that pointer (the crate's
//! other `unsafe`: `chat/shared.rs`, adapters on a shared model, and the quantizer's
//! FFI call, `convert/quantize.rs`).
#![allow(unsafe_code)]

use llama_cpp_2::context::LlamaContext;

/// The thread count of one context, changed only on its scheduler thread.
pub(super) struct ThreadControl {
    raw: Option<std::ptr::NonNull<llama_cpp_sys_2::llama_context>>,
    current: usize,
}

impl ThreadControl {
    /// For a context created with `configured` threads (decode and batch).
    pub(super) fn new(ctx: &LlamaContext<'_>, configured: usize) -> Self {
        let raw = context_pointer(ctx, configured);
        if raw.is_none() {
            tracing::warn!(
                "cannot reach llama.cpp's context to change its thread count; decoding keeps {configured} threads beside any load"
            );
        }
        Self {
            raw,
            current: configured,
        }
    }

    pub(super) fn current(&self) -> usize {
        self.current
    }

    /// Decodes from now on with `threads` threads (when the context was reachable).
    /// Must be called on the thread that decodes with `ctx`, between decode calls.
    pub(super) fn set(&mut self, _ctx: &mut LlamaContext<'_>, threads: usize) {
        let Some(raw) = self.raw else { return };
        if threads == self.current || threads == 0 {
            return;
        }
        let n = i32::try_from(threads).unwrap_or(i32::MAX);
        // SAFETY: `raw` is the pointer of `ctx` (checked in `context_pointer`), which is
        // alive (borrowed here) and used by no other thread: the caller holds it
        // mutably between decode calls. llama_set_n_threads only stores the counts.
        unsafe { llama_cpp_sys_2::llama_set_n_threads(raw.as_ptr(), n, n) };
        self.current = threads;
    }
}

/// The context's pointer, when its `Debug` output gives one that llama.cpp confirms.
fn context_pointer(
    ctx: &LlamaContext<'_>,
    configured: usize,
) -> Option<std::ptr::NonNull<llama_cpp_sys_2::llama_context>> {
    let address = pointer_in_debug(&format!("{ctx:?}"), "LlamaContext { context: ")?;
    let raw = std::ptr::NonNull::new(address as *mut llama_cpp_sys_2::llama_context)?;
    // SAFETY: reading three counters of a live context. The address is the one the
    // wrapper printed for its own context pointer; the checks confirm it before any
    // write through it.
    let (n_ctx, n_batch, n_threads) = unsafe {
        (
            llama_cpp_sys_2::llama_n_ctx(raw.as_ptr()),
            llama_cpp_sys_2::llama_n_batch(raw.as_ptr()),
            llama_cpp_sys_2::llama_n_threads(raw.as_ptr()),
        )
    };
    let confirmed = n_ctx == ctx.n_ctx()
        && n_batch == ctx.n_batch()
        && usize::try_from(n_threads).ok() == Some(configured);
    confirmed.then_some(raw)
}

/// The address in a wrapper's `Debug` output of one pointer field, such as
/// `LlamaContext { context: 0x55d0c2a1b2c0 }` (`head`: `LlamaContext { context: `).
pub(super) fn pointer_in_debug(debug: &str, head: &str) -> Option<usize> {
    let rest = debug.strip_prefix(head)?.strip_prefix("0x")?;
    let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    if hex.is_empty() || rest[hex.len()..].trim() != "}" {
        return None;
    }
    usize::from_str_radix(&hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_the_expected_debug_shape() {
        let head = "LlamaContext { context: ";
        assert_eq!(
            pointer_in_debug("LlamaContext { context: 0x55d0c2a1b2c0 }", head),
            Some(0x55d0_c2a1_b2c0)
        );
        assert_eq!(
            pointer_in_debug("LlamaContext { context: 0x1f, other: 2 }", head),
            None
        );
        assert_eq!(pointer_in_debug("LlamaContext { ptr: 0x1f }", head), None);
        assert_eq!(pointer_in_debug("LlamaContext { context: 0x }", head), None);
    }
}
