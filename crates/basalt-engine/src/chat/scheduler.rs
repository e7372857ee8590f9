//! The scheduler thread of one chat model: continuous batching over a fixed set of
//! slots (llama.cpp sequence ids).
//!
//! Each step builds one batch: first the next token of every decoding slot, then
//! chunks of waiting prompts up to the batch budget, so a long prompt never stalls
//! the others for more than one step. A new request takes the free slot whose cached
//! tokens share the longest prefix with its prompt, and only the rest is computed.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc as tokio_mpsc;

use super::shared::{self, Adapter, SharedModel};
use super::stop::{StopMatcher, StopScan};
use super::threads::ThreadControl;
use super::{
    ChatEngineConfig, EngineCounters, FinishReason, GenerationEvent, GenerationRequest,
    GenerationSummary, Priority,
};
use crate::cpu;
use crate::EngineError;

/// A request handed to the scheduler.
pub(super) struct Job {
    pub request: GenerationRequest,
    pub events: tokio_mpsc::UnboundedSender<GenerationEvent>,
    /// Built (and its grammar compiled) before the job is queued.
    pub sampler: LlamaSampler,
    /// Where the logits of the first sampled position go, when asked for.
    pub logits: Option<mpsc::Sender<Vec<f32>>>,
}

/// A request occupying a slot.
struct Active {
    job: Job,
    /// Prompt tokens already in the KV cache.
    prompt_done: usize,
    cached_prompt_tokens: u32,
    sampler: LlamaSampler,
    /// Temperature 0 and no grammar: the sampler is a plain argmax.
    plain_greedy: bool,
    generated: u32,
    /// A sampled token not yet fed back to the model.
    pending: Option<LlamaToken>,
    /// Bytes of a UTF-8 character split across tokens.
    partial_utf8: Vec<u8>,
    stops: StopMatcher,
    /// Index in the current batch whose logits belong to this slot.
    logits_at: Option<i32>,
    /// Tokens drafted by prompt lookup into this step after the pending one (their
    /// rows follow `logits_at`), to be verified against what the model samples.
    drafts: Vec<LlamaToken>,
    /// Steps left before this request drafts again (after drafts that missed).
    lookup_pause: u32,
    /// Drafted steps whose first draft missed, in a row.
    lookup_misses: u32,
    /// Tokens to draft next (grows while drafts are confirmed, shrinks when not).
    lookup_len: usize,
}

struct Slot {
    seq: i32,
    /// The tokens whose KV entries this sequence holds, in order.
    cached: Vec<LlamaToken>,
    active: Option<Active>,
}

pub(super) fn spawn(
    backend: &'static LlamaBackend,
    model: Arc<SharedModel>,
    adapter: Option<Adapter>,
    config: ChatEngineConfig,
    jobs: mpsc::Receiver<Job>,
    counters: Arc<EngineCounters>,
) -> Result<mpsc::Receiver<Result<(), EngineError>>, EngineError> {
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("basalt-chat-engine".into())
        .spawn(move || {
            let n_ctx = config.context_per_slot * config.slots;
            let params = LlamaContextParams::default()
                .with_n_ctx(std::num::NonZeroU32::new(n_ctx))
                .with_n_batch(config.batch_tokens)
                .with_n_ubatch(config.batch_tokens)
                .with_n_seq_max(config.slots)
                .with_n_threads(config.threads)
                .with_n_threads_batch(config.threads)
                .with_flash_attention_policy(if config.batch_invariant {
                    llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED
                } else {
                    llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO
                });
            // The adapter lives on this thread, and is dropped after the context that
            // uses it (the scheduler, which owns the context, ends first).
            let mut adapter = adapter;
            let ctx = match start_context(backend, &model, params, adapter.as_mut()) {
                Ok(ctx) => ctx,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let threads = ThreadControl::new(&ctx, config.threads.max(1) as usize);
            Scheduler::new(&model, ctx, threads, config, counters).run(jobs);
            drop(adapter);
        })
        .map_err(|e| EngineError::Compute(format!("cannot start engine thread: {e}")))?;
    Ok(ready_rx)
}

/// Creates the engine's context on `model` and sets `adapter` on it. A context reads
/// the model's adapter set when it reserves its compute graph, at creation and at its
/// first decode after an adapter is set, so both happen under the lock that guards
/// that set (see `shared`): the first decode is one token, forgotten at once.
fn start_context<'m>(
    backend: &LlamaBackend,
    model: &'m SharedModel,
    params: LlamaContextParams,
    adapter: Option<&mut Adapter>,
) -> Result<LlamaContext<'m>, EngineError> {
    let _adapters = model.is_shared().then(shared::adapter_list_lock);
    let mut ctx = model
        .new_context(backend, params)
        .map_err(|e| EngineError::Compute(format!("cannot create context: {e}")))?;
    if let Some(adapter) = adapter {
        ctx.lora_adapter_set(adapter.wrapper(), 1.0)
            .map_err(|e| EngineError::Compute(format!("cannot apply the LoRA adapter: {e}")))?;
        let mut batch = LlamaBatch::new(1, 1);
        batch
            .add(model.vocab().bos(), 0, &[0], true)
            .map_err(|e| EngineError::Compute(format!("cannot warm the context: {e}")))?;
        ctx.decode(&mut batch)
            .map_err(|e| EngineError::Compute(format!("cannot warm the context: {e}")))?;
        ctx.clear_kv_cache();
    }
    Ok(ctx)
}

/// Prompt tokens of other requests one shared step may carry while a reserved
/// request runs (a long prefill would otherwise make that step many times longer).
const SHARED_STEP_PROMPT_TOKENS: usize = 16;

struct Scheduler<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    config: ChatEngineConfig,
    counters: Arc<EngineCounters>,
    slots: Vec<Slot>,
    waiting: VecDeque<Job>,
    batch: LlamaBatch<'static>,
    /// Steps taken while a reserved request runs (for `shared_step_interval`).
    reserved_steps: u32,
    /// llama.cpp's thread count, set from the CPU budget before each step.
    threads: ThreadControl,
    /// Held while this engine has work (the budget shares cores among busy engines).
    busy: Option<cpu::ChatBusy>,
}

impl<'m> Scheduler<'m> {
    fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        threads: ThreadControl,
        config: ChatEngineConfig,
        counters: Arc<EngineCounters>,
    ) -> Self {
        let slots = (0..config.slots as i32)
            .map(|seq| Slot {
                seq,
                cached: Vec::new(),
                active: None,
            })
            .collect();
        let batch = LlamaBatch::new(config.batch_tokens as usize, config.slots as i32);
        Self {
            model,
            ctx,
            config,
            counters,
            slots,
            waiting: VecDeque::new(),
            batch,
            reserved_steps: 0,
            threads,
            busy: None,
        }
    }

    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        loop {
            let busy = self.slots.iter().any(|s| s.active.is_some()) || !self.waiting.is_empty();
            if !busy {
                self.busy = None;
                match jobs.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => return, // the engine was dropped
                }
            }
            while let Ok(job) = jobs.try_recv() {
                self.waiting.push_back(job);
            }
            self.drop_cancelled();
            self.admit_waiting();
            if self.slots.iter().all(|s| s.active.is_none()) {
                continue;
            }
            if self.busy.is_none() {
                self.busy = Some(cpu::budget().chat_busy());
            }
            self.step();
        }
    }

    /// Frees slots whose caller went away.
    fn drop_cancelled(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|job| !job.events.is_closed());
        let dropped = (before - self.waiting.len()) as u64;
        self.counters.waiting.fetch_sub(dropped, Ordering::Relaxed);
        for slot in &mut self.slots {
            if slot
                .active
                .as_ref()
                .is_some_and(|a| a.job.events.is_closed())
            {
                slot.active = None;
            }
        }
    }

    /// The waiting job to admit next: the oldest of the highest priority waiting
    /// (background work only takes capacity nobody else is waiting for).
    fn next_waiting(&self) -> Option<usize> {
        let top = self.waiting.iter().map(|job| job.request.priority).max()?;
        self.waiting
            .iter()
            .position(|job| job.request.priority == top)
    }

    /// Moves waiting jobs into free slots, reusing the longest cached prefix.
    fn admit_waiting(&mut self) {
        while let Some(next) = self.next_waiting() {
            let Some(job) = self.waiting.get(next) else {
                return;
            };
            let prompt = &job.request.prompt;
            let best = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.active.is_none())
                .map(|(i, s)| (i, common_prefix(&s.cached, prompt)))
                .max_by_key(|&(_, common)| common);
            let Some((index, common)) = best else { return };
            let Some(mut job) = self.waiting.remove(next) else {
                return;
            };
            self.counters.waiting.fetch_sub(1, Ordering::Relaxed);
            // At least the last prompt token is recomputed: its logits start the answer.
            let reuse = common.min(job.request.prompt.len().saturating_sub(1));
            let slot = &mut self.slots[index];
            if self
                .ctx
                .kv_cache_seq_rm(slot.seq, Some(reuse as u32), None)
                .is_err()
            {
                let _ = self.ctx.kv_cache_seq_rm(slot.seq, None, None);
                slot.cached.clear();
            } else {
                slot.cached.truncate(reuse);
            }
            let reused = slot.cached.len();
            self.counters
                .prompt_tokens_reused
                .fetch_add(reused as u64, Ordering::Relaxed);
            let sampler = std::mem::replace(&mut job.sampler, LlamaSampler::greedy());
            let stops = StopMatcher::new(job.request.stop_sequences.clone());
            let plain_greedy =
                job.request.sampling.temperature <= 0.0 && job.request.constraint.is_none();
            slot.active = Some(Active {
                job,
                prompt_done: reused,
                cached_prompt_tokens: reused as u32,
                sampler,
                plain_greedy,
                generated: 0,
                pending: None,
                partial_utf8: Vec::new(),
                stops,
                logits_at: None,
                drafts: Vec::new(),
                lookup_pause: 0,
                lookup_misses: 0,
                lookup_len: 1,
            });
        }
    }

    /// One decode step over every active slot.
    fn step(&mut self) {
        self.batch.clear();
        let budget = self.config.batch_tokens as usize;
        let mut used = 0usize;
        // While a reserved request runs, the others join one step in
        // `shared_step_interval`: the steps in between carry only reserved work, so
        // they cost what a step of the reserved requests alone costs.
        let reserved_running = self.slots.iter().any(|s| {
            s.active
                .as_ref()
                .is_some_and(|a| a.job.request.priority == Priority::Reserved)
        });
        let others_join = if reserved_running {
            self.reserved_steps = self.reserved_steps.wrapping_add(1);
            self.reserved_steps
                .is_multiple_of(self.config.shared_step_interval.max(1))
        } else {
            self.reserved_steps = 0;
            true
        };
        let takes_part =
            |active: &Active| others_join || active.job.request.priority == Priority::Reserved;
        let mut others_prompt = 0usize;
        // Decoding slots first: one token each keeps every stream moving.
        for slot in &mut self.slots {
            let Some(active) = slot.active.as_mut() else {
                continue;
            };
            active.logits_at = None;
            if !takes_part(active) {
                continue;
            }
            if let Some(token) = active.pending.take() {
                let pos = slot.cached.len() as i32;
                if self.batch.add(token, pos, &[slot.seq], true).is_ok() {
                    active.logits_at = Some(used as i32);
                    slot.cached.push(token);
                    used += 1;
                    // Prompt lookup: tokens that followed the same n-gram earlier in
                    // the prompt or the answer, verified in this same step.
                    let room = [
                        self.config.lookup_drafts as usize,
                        (active
                            .job
                            .request
                            .max_tokens
                            .saturating_sub(active.generated + 1)) as usize,
                        (self.config.context_per_slot as usize)
                            .saturating_sub(slot.cached.len() + 2),
                        budget.saturating_sub(used),
                        active.lookup_len,
                    ]
                    .into_iter()
                    .min()
                    .unwrap_or(0);
                    if active.lookup_pause > 0 {
                        active.lookup_pause -= 1;
                    } else if room > 0 {
                        for draft in lookup_drafts(&slot.cached, room) {
                            let pos = slot.cached.len() as i32;
                            if self.batch.add(draft, pos, &[slot.seq], true).is_err() {
                                break;
                            }
                            slot.cached.push(draft);
                            active.drafts.push(draft);
                            used += 1;
                        }
                    }
                } else {
                    active.pending = Some(token);
                }
            }
        }
        // Then prompt chunks, in slot order, within what is left of the budget.
        for slot in &mut self.slots {
            let Some(active) = slot.active.as_mut() else {
                continue;
            };
            let prompt = &active.job.request.prompt;
            if active.prompt_done >= prompt.len()
                || active.logits_at.is_some()
                || !takes_part(active)
            {
                continue;
            }
            let mut room = budget.saturating_sub(used);
            if reserved_running && active.job.request.priority != Priority::Reserved {
                // A shared step stays short: others' prompts advance a little at a time.
                room = room.min(SHARED_STEP_PROMPT_TOKENS.saturating_sub(others_prompt));
            }
            if room == 0 {
                continue;
            }
            let start = active.prompt_done;
            let mut end = prompt.len().min(start + room);
            // The last prompt token (whose logits start the answer) is computed in a
            // step of its own, never at the end of a longer chunk: llama.cpp's CPU
            // kernels for a many-row chunk and for one row sum in different orders,
            // so its logits would differ by rounding between a fresh prompt and one
            // whose prefix is cached (where only that token is computed), and a
            // greedy or grammar-constrained answer could take another path. A
            // batch-invariant engine computes every row the same way, so there the
            // last token rides with its chunk (one decode step less per request).
            if end == prompt.len() && end - start > 1 && !self.config.batch_invariant {
                end -= 1;
            }
            for i in active.prompt_done..end {
                let token = LlamaToken(prompt[i]);
                let last = i + 1 == prompt.len();
                if self
                    .batch
                    .add(token, slot.cached.len() as i32, &[slot.seq], last)
                    .is_err()
                {
                    break;
                }
                if last {
                    active.logits_at = Some(used as i32);
                }
                slot.cached.push(token);
                used += 1;
                active.prompt_done = i + 1;
            }
            if active.job.request.priority != Priority::Reserved {
                others_prompt += active.prompt_done - start;
            }
            self.counters
                .prompt_tokens_processed
                .fetch_add((active.prompt_done - start) as u64, Ordering::Relaxed);
        }
        if used == 0 {
            return;
        }
        self.counters.decode_steps.fetch_add(1, Ordering::Relaxed);
        let threads = cpu::budget().chat_threads(self.config.threads.max(1) as usize);
        self.threads.set(&mut self.ctx, threads);
        self.counters
            .threads
            .store(self.threads.current() as u64, Ordering::Relaxed);
        if let Err(e) = self.ctx.decode(&mut self.batch) {
            self.fail_all(format!("llama.cpp decode failed: {e}"));
            return;
        }
        self.sample_all();
    }

    fn sample_all(&mut self) {
        let window = self.config.context_per_slot as usize;
        let vocab = self.model.vocab();
        for slot in &mut self.slots {
            let Some(active) = slot.active.as_mut() else {
                continue;
            };
            let Some(at) = active.logits_at.take() else {
                continue;
            };
            let drafts = std::mem::take(&mut active.drafts);
            // Cache entries up to and including the pending token fed this step.
            let fed = slot.cached.len() - drafts.len();
            // Row `row` holds the pending token (row 0) or draft `row - 1`; its logits
            // give the next token. A draft is kept only when it equals what the model
            // samples at the row before it, so the output is the one plain decoding
            // gives (the same sampler, the same draws, in the same order).
            let mut row = 0usize;
            let outcome = loop {
                let index = at + row as i32;
                if let Some(logits) = active.job.logits.take() {
                    let _ = logits.send(self.ctx.get_logits_ith(index).to_vec());
                }
                let token = if active.plain_greedy {
                    // Greedy without a grammar: an argmax over the logits, which skips
                    // building llama.cpp's candidate array (the whole vocabulary).
                    argmax(self.ctx.get_logits_ith(index))
                } else {
                    active.sampler.sample(&self.ctx, index)
                };
                let outcome = emit(active, token, &vocab, &self.counters, fed + row, window);
                if outcome.is_some() {
                    break outcome;
                }
                if drafts.get(row) == Some(&token) {
                    // The draft was right: it is already in the cache, and its row's
                    // logits are the next ones.
                    active.pending = None;
                    row += 1;
                    continue;
                }
                break None;
            };
            if !drafts.is_empty() {
                self.counters
                    .lookup_drafted
                    .fetch_add(drafts.len() as u64, Ordering::Relaxed);
                self.counters
                    .lookup_accepted
                    .fetch_add(row as u64, Ordering::Relaxed);
                // The next draft: twice as long after a fully confirmed one, one past
                // what was confirmed otherwise.
                active.lookup_len = if row == drafts.len() {
                    (2 * drafts.len()).min(self.config.lookup_drafts as usize)
                } else {
                    row + 1
                };
                if row == 0 {
                    active.lookup_misses += 1;
                    if active.lookup_misses >= LOOKUP_MISSES_BEFORE_PAUSE {
                        active.lookup_pause = LOOKUP_PAUSE_STEPS;
                        active.lookup_misses = 0;
                    }
                } else {
                    active.lookup_misses = 0;
                }
            }
            // Drafts after the last one kept never happened: out of the cache.
            let keep = fed + row;
            if slot.cached.len() > keep {
                if self
                    .ctx
                    .kv_cache_seq_rm(slot.seq, Some(keep as u32), None)
                    .is_ok()
                {
                    slot.cached.truncate(keep);
                } else {
                    // The cache cannot be trimmed: forget it, and stop the request
                    // (its context is gone) rather than answer from a wrong one.
                    let _ = self.ctx.kv_cache_seq_rm(slot.seq, None, None);
                    slot.cached.clear();
                    let _ = active
                        .job
                        .events
                        .send(GenerationEvent::Failed(EngineError::Compute(
                            "llama.cpp could not drop drafted tokens from the KV cache".into(),
                        )));
                    slot.active = None;
                    continue;
                }
            }
            if let Some(reason) = outcome {
                if reason != FinishReason::StopSequence {
                    let mut rest = active.stops.finish();
                    rest.push_str(&String::from_utf8_lossy(&active.partial_utf8));
                    send_text(&active.job.events, rest);
                }
                let summary = GenerationSummary {
                    finish_reason: reason,
                    prompt_tokens: active.job.request.prompt.len() as u32,
                    cached_prompt_tokens: active.cached_prompt_tokens,
                    completion_tokens: active.generated,
                };
                let _ = active.job.events.send(GenerationEvent::Finished(summary));
                self.counters
                    .requests_finished
                    .fetch_add(1, Ordering::Relaxed);
                slot.active = None;
            }
        }
    }

    fn fail_all(&mut self, reason: String) {
        for slot in &mut self.slots {
            if let Some(active) = slot.active.take() {
                let _ = active
                    .job
                    .events
                    .send(GenerationEvent::Failed(EngineError::Compute(
                        reason.clone(),
                    )));
            }
            let _ = self.ctx.kv_cache_seq_rm(slot.seq, None, None);
            slot.cached.clear();
        }
    }
}

/// Drafted steps whose first draft missed, in a row, before a request stops drafting
/// for [`LOOKUP_PAUSE_STEPS`] steps (free text rarely repeats itself: a miss costs
/// the rows of the drafts).
const LOOKUP_MISSES_BEFORE_PAUSE: u32 = 2;
const LOOKUP_PAUSE_STEPS: u32 = 16;

/// Shortest n-gram whose earlier occurrence drafts the tokens after it.
const LOOKUP_NGRAM: usize = 3;

/// Prompt lookup: the (at most `max`) tokens that followed the most recent earlier
/// occurrence of the last [`LOOKUP_NGRAM`] tokens of `history` (the prompt and the
/// answer so far). Empty when there is none.
fn lookup_drafts(history: &[LlamaToken], max: usize) -> Vec<LlamaToken> {
    let n = LOOKUP_NGRAM;
    if max == 0 || history.len() <= n {
        return Vec::new();
    }
    let tail = &history[history.len() - n..];
    for start in (0..history.len() - n).rev() {
        if &history[start..start + n] == tail {
            let from = start + n;
            let to = (from + max).min(history.len());
            return history[from..to].to_vec();
        }
    }
    Vec::new()
}

/// Hands one sampled token to its request: text out, and whether the request ends
/// here. `fed` is how many cache entries are real (the prompt and the tokens fed).
fn emit(
    active: &mut Active,
    token: LlamaToken,
    vocab: &llama_cpp_2::vocab::LlamaVocab,
    counters: &EngineCounters,
    fed: usize,
    window: usize,
) -> Option<FinishReason> {
    if vocab.is_eog(token) {
        return Some(FinishReason::EndOfTurn);
    }
    active.generated += 1;
    counters.tokens_generated.fetch_add(1, Ordering::Relaxed);
    active
        .partial_utf8
        .extend(vocab.token_to_piece(token, false, None));
    let text = take_valid_utf8(&mut active.partial_utf8);
    match active.stops.push(&text) {
        StopScan::Stopped(before) => {
            send_text(&active.job.events, before);
            Some(FinishReason::StopSequence)
        }
        StopScan::Continue(released) => {
            send_text(&active.job.events, released);
            if active.generated >= active.job.request.max_tokens {
                Some(FinishReason::MaxTokens)
            } else if fed + 1 >= window {
                Some(FinishReason::ContextWindow)
            } else {
                active.pending = Some(token);
                None
            }
        }
    }
}

fn send_text(events: &tokio_mpsc::UnboundedSender<GenerationEvent>, text: String) {
    if !text.is_empty() {
        let _ = events.send(GenerationEvent::Text(text));
    }
}

/// The sampler chain of a request: the grammar first (so it masks what the others see),
/// then greedy or top-k / top-p / temperature / seeded draw.
pub(super) fn make_sampler(
    model: &LlamaModel,
    params: &super::SamplingParams,
    constraint: Option<&super::OutputConstraint>,
) -> Result<LlamaSampler, EngineError> {
    let mut chain = Vec::new();
    let bad_grammar = |e: llama_cpp_2::GrammarError| {
        EngineError::InvalidRequest(format!("the output grammar is invalid: {e}"))
    };
    match constraint {
        None => {}
        Some(super::OutputConstraint::Grammar(g)) => {
            chain.push(LlamaSampler::grammar(model, g, "root").map_err(bad_grammar)?)
        }
        Some(super::OutputConstraint::LazyGrammar {
            grammar,
            trigger_patterns,
        }) => chain.push(
            LlamaSampler::grammar_lazy_patterns(model, grammar, "root", trigger_patterns, &[])
                .map_err(bad_grammar)?,
        ),
    }
    if params.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if params.top_k > 0 {
            chain.push(LlamaSampler::top_k(params.top_k));
        }
        if params.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(params.top_p, 1));
        }
        chain.push(LlamaSampler::temp(params.temperature));
        chain.push(LlamaSampler::dist(params.seed));
    }
    Ok(if chain.len() == 1 {
        chain.remove(0)
    } else {
        LlamaSampler::chain_simple(chain)
    })
}

/// The index of the largest logit (the first one on ties, as llama.cpp's greedy sampler).
fn argmax(logits: &[f32]) -> LlamaToken {
    let mut best = 0usize;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_value {
            best_value = v;
            best = i;
        }
    }
    LlamaToken(best as i32)
}

fn common_prefix(cached: &[LlamaToken], prompt: &[i32]) -> usize {
    cached
        .iter()
        .zip(prompt)
        .take_while(|(c, p)| c.0 == **p)
        .count()
}

/// Takes the longest valid UTF-8 prefix out of `bytes`, leaving an incomplete tail.
fn take_valid_utf8(bytes: &mut Vec<u8>) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            let s = s.to_string();
            bytes.clear();
            s
        }
        Err(e) if e.error_len().is_none() => {
            let valid = e.valid_up_to();
            let s = String::from_utf8_lossy(&bytes[..valid]).into_owned();
            bytes.drain(..valid);
            s
        }
        Err(_) => {
            let s = String::from_utf8_lossy(bytes).into_owned();
            bytes.clear();
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_an_incomplete_utf8_tail() {
        let mut bytes = "é".as_bytes()[..1].to_vec();
        assert_eq!(take_valid_utf8(&mut bytes), "");
        bytes.push("é".as_bytes()[1]);
        assert_eq!(take_valid_utf8(&mut bytes), "é");
        assert!(bytes.is_empty());
    }

    #[test]
    fn lookup_drafts_what_followed_the_last_trigram() {
        let t = |v: &[i32]| v.iter().map(|&x| LlamaToken(x)).collect::<Vec<_>>();
        // "... 1 2 3 4 5 ... 1 2 3" drafts "4 5" (the most recent match first).
        let history = t(&[9, 1, 2, 3, 4, 5, 8, 1, 2, 3, 7, 1, 2, 3]);
        assert_eq!(lookup_drafts(&history, 4), t(&[7, 1, 2, 3]));
        assert_eq!(lookup_drafts(&history, 1), t(&[7]));
        assert_eq!(lookup_drafts(&history, 0), t(&[]));
        assert_eq!(
            lookup_drafts(&t(&[1, 2, 3, 4]), 4),
            t(&[]),
            "no earlier occurrence"
        );
        assert_eq!(lookup_drafts(&t(&[1, 2]), 4), t(&[]));
        // A run overlapping its own tail: "5 5 5 5" drafts the 5 after the first trigram.
        assert_eq!(lookup_drafts(&t(&[5, 5, 5, 5]), 3), t(&[5]));
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 3.0, -1.0, 3.0]).0, 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY, -5.0]).0, 1);
    }

    #[test]
    fn common_prefix_counts_matching_tokens() {
        let cached = [LlamaToken(1), LlamaToken(2), LlamaToken(3)];
        assert_eq!(common_prefix(&cached, &[1, 2, 9]), 2);
        assert_eq!(common_prefix(&cached, &[5]), 0);
        assert_eq!(common_prefix(&[], &[1]), 0);
    }
}
