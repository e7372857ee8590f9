//! One llama.cpp model per GGUF file, shared by every chat engine that serves it: a
//! base model and each of its custom models (the base plus a LoRA adapter on a context
//! of its own) hold the same weights once.
//!
//! Sharing by memory-mapping alone is not enough: where llama.cpp repacks weights into
//! buffers of its own (AMX and other CPU-specific layouts), every load of a file holds
//! a private copy of the model. So engines ask [`load`] for the model of a file, which
//! hands out the one already loaded (same canonical path, size, modification time and
//! GPU offload) or loads it.
//!
//! Adapters on a shared model. `llama-cpp-2` 0.1.160 initialises an adapter only
//! through `&mut LlamaModel`, which a shared model cannot give, so [`Adapter::init`]
//! calls llama.cpp's `llama_adapter_lora_init` itself, on the model's pointer. The
//! pointer is read from the wrapper's `Debug` output (`LlamaModel { model: 0x… }`,
//! the crate is pinned exactly) and confirmed against the wrapper's own answers
//! (parameter count, training context, size) before any use; where it cannot be
//! confirmed, an adapter's engine loads a private copy of the model and uses the safe
//! call, as before: more memory, never wrong.
//!
//! llama.cpp keeps a model's adapters in an unordered set (`llama_model::loras`) with
//! no lock of its own: adapter init and free change it, and a context reads it when it
//! reserves its compute graph (on creation, and at its first decode after an adapter
//! is set). Every one of those runs under [`adapter_list_lock`], so an engine starting
//! or stopping never races another engine's start on the same model. After its first
//! decode a context does not read the set again (it reserves again only when its
//! adapters change, which Basalt never does).
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::CString;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::SystemTime;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};

use super::threads::pointer_in_debug;

/// A loaded GGUF model and, when confirmed, llama.cpp's pointer to it.
pub(super) struct SharedModel {
    model: LlamaModel,
    raw: Option<NonNull<llama_cpp_sys_2::llama_model>>,
    /// Whether [`load`] hands this model to other engines too.
    shared: bool,
}

// SAFETY: `LlamaModel` is Send and Sync (llama.cpp's model is read-only while contexts
// decode); `raw` is that model's own pointer, used only to initialise and free
// adapters under `adapter_list_lock`.
unsafe impl Send for SharedModel {}
unsafe impl Sync for SharedModel {}

impl std::ops::Deref for SharedModel {
    type Target = LlamaModel;
    fn deref(&self) -> &LlamaModel {
        &self.model
    }
}

impl SharedModel {
    fn new(model: LlamaModel, shared: bool) -> Self {
        let raw = model_pointer(&model);
        if raw.is_none() {
            tracing::warn!(
                "cannot reach llama.cpp's model to initialise adapters on it; each custom model's engine loads its own copy of the base"
            );
        }
        Self { model, raw, shared }
    }

    /// The model itself, while no engine holds it yet.
    pub(super) fn model_mut(&mut self) -> &mut LlamaModel {
        &mut self.model
    }

    /// Whether engines serving this file share these weights.
    pub(super) fn is_shared(&self) -> bool {
        self.shared
    }
}

/// Which loaded model a request for a file may reuse.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ModelKey {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
    gpu_layers: u32,
}

impl ModelKey {
    fn of(path: &Path, gpu_layers: u32) -> Option<Self> {
        let path = std::fs::canonicalize(path).ok()?;
        let meta = std::fs::metadata(&path).ok()?;
        Some(Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            path,
            gpu_layers,
        })
    }
}

type Slot = Arc<Mutex<Weak<SharedModel>>>;

fn registry() -> &'static Mutex<HashMap<ModelKey, Slot>> {
    static MODELS: OnceLock<Mutex<HashMap<ModelKey, Slot>>> = OnceLock::new();
    MODELS.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Serialises everything that reads or changes a model's adapter set (see the module
/// documentation).
pub(super) fn adapter_list_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    lock(&LOCK)
}

/// The model of `path`: the one another engine already holds, or a new load. Two
/// engines asking for one file at once load it once (the second waits for the first);
/// different files load in parallel.
pub(super) fn load(
    backend: &LlamaBackend,
    path: &Path,
    gpu_layers: u32,
) -> Result<Arc<SharedModel>, String> {
    let Some(key) = ModelKey::of(path, gpu_layers) else {
        // Unreadable metadata: the load below reports the real error.
        return load_private(backend, path, gpu_layers);
    };
    let slot = {
        let mut models = lock(registry());
        models.retain(|_, slot| Arc::strong_count(slot) > 1 || lock(slot).strong_count() > 0);
        Arc::clone(models.entry(key).or_default())
    };
    let mut held = lock(&slot);
    if let Some(model) = held.upgrade() {
        return Ok(model);
    }
    let model = Arc::new(SharedModel::new(read(backend, path, gpu_layers)?, true));
    *held = Arc::downgrade(&model);
    Ok(model)
}

/// A model of `path` no other engine shares.
pub(super) fn load_private(
    backend: &LlamaBackend,
    path: &Path,
    gpu_layers: u32,
) -> Result<Arc<SharedModel>, String> {
    Ok(Arc::new(SharedModel::new(
        read(backend, path, gpu_layers)?,
        false,
    )))
}

fn read(backend: &LlamaBackend, path: &Path, gpu_layers: u32) -> Result<LlamaModel, String> {
    let params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
    LlamaModel::load_from_file(backend, path, &params).map_err(|e| e.to_string())
}

/// A LoRA adapter initialised on a model, freed (under the lock) when dropped. It
/// must outlive every context it is set on.
pub(super) enum Adapter {
    /// On a shared model, through llama.cpp's own calls.
    Shared {
        raw: NonNull<llama_cpp_sys_2::llama_adapter_lora>,
        wrapper: ManuallyDrop<LlamaLoraAdapter>,
        /// Keeps the model alive as long as its adapter.
        _model: Arc<SharedModel>,
    },
    /// On a private model, through the safe wrapper (freed with that model).
    Private(LlamaLoraAdapter),
}

// SAFETY: an adapter is read-only once initialised; it is set on one context and freed
// once, on the engine's thread, under the lock.
unsafe impl Send for Adapter {}

impl Adapter {
    /// Initialises the adapter at `path` on `model`. `Ok(None)` when the model's
    /// pointer is not confirmed: the caller loads a private model instead.
    pub(super) fn init(model: &Arc<SharedModel>, path: &Path) -> Result<Option<Self>, String> {
        let Some(raw_model) = model.raw else {
            return Ok(None);
        };
        let text = path
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
        let c_path = CString::new(text).map_err(|e| e.to_string())?;
        let raw = {
            let _adapters = adapter_list_lock();
            // SAFETY: `raw_model` is the live model's pointer (confirmed in
            // `model_pointer`; `model` keeps it alive); the adapter set it changes is
            // guarded by the lock held here; llama.cpp reads the file at `c_path`.
            unsafe { llama_cpp_sys_2::llama_adapter_lora_init(raw_model.as_ptr(), c_path.as_ptr()) }
        };
        let raw = NonNull::new(raw).ok_or_else(|| {
            "llama.cpp could not load it (its log says why: a file that is not a GGUF LoRA adapter, or one made for another model)".to_string()
        })?;
        // SAFETY: `LlamaLoraAdapter` is `#[repr(transparent)]` over the adapter's
        // non-null pointer (transmute checks the sizes); it has no `Drop`, and the
        // `ManuallyDrop` keeps it from ever freeing what `Drop for Adapter` frees.
        let wrapper = unsafe {
            std::mem::transmute::<NonNull<llama_cpp_sys_2::llama_adapter_lora>, LlamaLoraAdapter>(
                raw,
            )
        };
        Ok(Some(Self::Shared {
            raw,
            wrapper: ManuallyDrop::new(wrapper),
            _model: Arc::clone(model),
        }))
    }

    /// The wrapper `LlamaContext::lora_adapter_set` takes.
    pub(super) fn wrapper(&mut self) -> &mut LlamaLoraAdapter {
        match self {
            Self::Shared { wrapper, .. } => wrapper,
            Self::Private(adapter) => adapter,
        }
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        if let Self::Shared { raw, .. } = self {
            let _adapters = adapter_list_lock();
            // SAFETY: the adapter was made by llama_adapter_lora_init on a model this
            // value keeps alive, is freed only here, and the contexts it was set on are
            // gone (the engine drops its context before its adapter).
            unsafe { llama_cpp_sys_2::llama_adapter_lora_free(raw.as_ptr()) };
        }
    }
}

/// How `llama-cpp-2` 0.1.160 prints a model: `LlamaModel { model: 0x55d0c2a1b2c0 }`.
const MODEL_DEBUG_HEAD: &str = "LlamaModel { model: ";

/// The model's pointer, when its `Debug` output gives one that llama.cpp confirms.
fn model_pointer(model: &LlamaModel) -> Option<NonNull<llama_cpp_sys_2::llama_model>> {
    let address = pointer_in_debug(&format!("{model:?}"), MODEL_DEBUG_HEAD)?;
    let raw = NonNull::new(address as *mut llama_cpp_sys_2::llama_model)?;
    // SAFETY: reading three counters of a live model, at the address the wrapper
    // printed for its own model pointer; the checks confirm it before any other use.
    let (n_params, n_ctx_train, size) = unsafe {
        (
            llama_cpp_sys_2::llama_model_n_params(raw.as_ptr()),
            llama_cpp_sys_2::llama_model_n_ctx_train(raw.as_ptr()),
            llama_cpp_sys_2::llama_model_size(raw.as_ptr()),
        )
    };
    let confirmed = n_params == model.n_params()
        && u32::try_from(n_ctx_train).ok() == Some(model.n_ctx_train())
        && size == model.size();
    confirmed.then_some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_the_expected_debug_shape() {
        let read = |debug: &str| pointer_in_debug(debug, MODEL_DEBUG_HEAD);
        assert_eq!(
            read("LlamaModel { model: 0x55d0c2a1b2c0 }"),
            Some(0x55d0_c2a1_b2c0)
        );
        assert_eq!(read("LlamaModel { model: 0x1f, x: 2 }"), None);
        assert_eq!(read("LlamaContext { context: 0x1f }"), None);
        assert_eq!(read("LlamaModel { model: 0x }"), None);
    }

    #[test]
    fn a_file_is_keyed_by_its_canonical_path_and_contents_stamp() {
        let dir = std::env::temp_dir().join(format!("basalt-model-key-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("dir");
        let file = dir.join("m.gguf");
        std::fs::write(&file, b"GGUF").expect("file");
        let direct = ModelKey::of(&file, 0).expect("key");
        let roundabout = ModelKey::of(&dir.join("sub/../m.gguf"), 0).expect("key");
        assert_eq!(direct, roundabout);
        assert_ne!(direct, ModelKey::of(&file, 99).expect("key"), "GPU offload");
        std::fs::write(&file, b"GGUF, rewritten").expect("file");
        assert_ne!(
            direct,
            ModelKey::of(&file, 0).expect("key"),
            "a replaced file"
        );
        assert!(ModelKey::of(&dir.join("missing.gguf"), 0).is_none());
        std::fs::remove_dir_all(&dir).ok();
    }
}
