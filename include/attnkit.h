/*
 * attnkit.h — the single public header of attnkit, a C library of attention mechanisms for
 * long-context transformers (fused exact attention, and later decode, sparse and linear attention).
 *
 * Quick start (dense causal prefill, BHSD f32 tensors):
 *
 *     ak_ctx *ctx;  ak_ctx_create(&ctx);                 // threads from AK_NUM_THREADS or all cores
 *     ak_attn_desc d;  ak_attn_desc_init(&d);
 *     d.batch = 1; d.num_heads_q = 8; d.num_heads_kv = 2; d.seqlen_q = d.seqlen_k = 4096;
 *     d.head_dim = d.head_dim_v = 128; d.causal = 1;
 *     ak_plan *plan;  ak_plan_create(ctx, &d, &plan);    // validates, chooses a kernel, schedules
 *     ak_attn_tensors t;  ak_attn_tensors_init(&t);
 *     t.q = ak_tensor_4d(q, AK_F32, 1, 8, 4096, 128);    // contiguous [B][H][L][D]
 *     ...  t.k, t.v, t.o likewise; t.lse optional
 *     ak_attention_run(plan, &t, NULL, 0);               // NULL workspace: allocated through the ctx
 *     ak_plan_destroy(plan);  ak_ctx_destroy(ctx);
 *
 * Conventions (FlashAttention / FlashInfer semantics; see docs/API.md):
 *  - Every function returns ak_status (AK_OK = 0); ak_status_string() names it and
 *    ak_ctx_last_error() gives a precise message. The library never aborts or exits on user input.
 *  - Tensors are views: data pointer, dtype, logical shape and int64 strides counted in ELEMENTS.
 *    Attention tensors always have the logical shape [B][H][L][D]; any memory layout (BHSD, BSHD,
 *    packed QKV, ...) is expressed through the strides. Inputs may have any non-negative strides
 *    (including 0 = broadcast); outputs need positive strides and non-overlapping elements.
 *    Data pointers must be aligned to their element size (4 bytes for f32, 2 for bf16/f16;
 *    AK_ERR_INVALID_ARGUMENT otherwise); no other alignment is required, and nothing is read
 *    outside the elements the view describes.
 *  - Logits: s_ij = scale * (q_i . k_j); then softcap; then ALiBi; then masks.
 *  - LSE is the NATURAL log of the softmax denominator, fp32.
 *  - A fully-masked row (no visible key) gets output 0 and LSE -inf (or LSE = sink, see sinks).
 */
#ifndef ATTNKIT_H
#define ATTNKIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AK_VERSION_MAJOR 0
#define AK_VERSION_MINOR 1
#define AK_VERSION_PATCH 0
#define AK_VERSION_STRING "0.1.0"

#if defined(_WIN32) && defined(AK_SHARED_BUILD)
#define AK_API __declspec(dllexport)
#elif defined(_WIN32) && defined(AK_SHARED_USE)
#define AK_API __declspec(dllimport)
#elif defined(__GNUC__)
#define AK_API __attribute__((visibility("default")))
#else
#define AK_API
#endif

/* ------------------------------------------------------------------------------------------------
 * Status
 * ---------------------------------------------------------------------------------------------- */

/** Result of every attnkit call. 0 is success; every failure has its own code. */
typedef enum ak_status {
    AK_OK = 0,
    AK_ERR_NULL_POINTER = 1,        /**< a required pointer argument is NULL */
    AK_ERR_INVALID_ARGUMENT = 2,    /**< a scalar argument is out of range (window < -1, softcap < 0, ...) */
    AK_ERR_SHAPE_MISMATCH = 3,      /**< tensor shapes disagree with each other or with the descriptor */
    AK_ERR_UNSUPPORTED_DTYPE = 4,   /**< dtype not accepted for this argument */
    AK_ERR_BAD_STRIDE = 5,          /**< negative stride, or an output stride of 0 */
    AK_ERR_OUTPUT_OVERLAP = 6,      /**< output elements overlap each other or an input */
    AK_ERR_GQA_RATIO = 7,           /**< num_heads_q is not a multiple of num_heads_kv */
    AK_ERR_HEAD_DIM = 8,            /**< head_dim or head_dim_v is 0 or above AK_MAX_HEAD_DIM */
    AK_ERR_BAD_METADATA = 9,        /**< cu_seqlens / seqused_k invalid (not 0-based, decreasing, out of range) */
    AK_ERR_WORKSPACE_TOO_SMALL = 10,/**< the caller's workspace is smaller than ak_plan_workspace_size() */
    AK_ERR_OUT_OF_MEMORY = 11,      /**< an allocation failed */
    AK_ERR_UNSUPPORTED_ISA = 12,    /**< the requested ISA is not available on this CPU/OS */
    AK_ERR_PLAN_MISMATCH = 13,      /**< tensors passed to run do not match the plan's descriptor */
    AK_ERR_INTERNAL = 14,           /**< a bug in attnkit; please report it */
    AK_ERR_PAGE_OUT_OF_RANGE = 15,  /**< a page id in a page table is outside [0, num_pages) */
    AK_ERR_CAPACITY = 16,           /**< a KV cache has no room: append past capacity / out of pages */
    AK_ERR_BAD_PLAN = 17,           /**< a sparse plan is malformed: bounds, order, duplicates, overlaps */
    AK_ERR_BAD_FILE = 18,           /**< a model file (GGUF) is malformed: magic, version, sizes, offsets, types */
    AK_ERR_IO = 19                  /**< a file cannot be opened, mapped, read or written */
} ak_status;

/** Static, human-readable name of a status ("AK_ERR_GQA_RATIO: ..."). Never NULL. */
AK_API const char *ak_status_string(ak_status s);

/** Runtime version "MAJOR.MINOR.PATCH". */
AK_API const char *ak_version(void);
/** Build description: version, git commit, compiler, build type. */
AK_API const char *ak_build_info(void);

/* ------------------------------------------------------------------------------------------------
 * Context
 * ---------------------------------------------------------------------------------------------- */

typedef struct ak_ctx ak_ctx;

/** Instruction-set levels, ordered. AK_ISA_AVX512BF16 = AVX-512F/BW/VL plus AVX512_BF16. */
typedef enum ak_isa {
    AK_ISA_SCALAR = 0,
    AK_ISA_AVX2 = 1,       /* AVX2 + FMA + F16C */
    AK_ISA_AVX512 = 2,     /* AVX-512 F, BW, VL, DQ */
    AK_ISA_AVX512BF16 = 3  /* AVX-512 + AVX512_BF16 (vdpbf16ps) */
} ak_isa;

/** Name of an ISA level ("scalar", "avx2", "avx512", "avx512bf16"). */
AK_API const char *ak_isa_name(ak_isa isa);
/** Best ISA this CPU and OS support (cpuid + XGETBV), ignoring every cap. */
AK_API ak_isa ak_isa_detect(void);

/** Optional allocator hooks: alloc must return memory aligned to `align` (a power of two >= 64). They must be
 *  thread-safe: the content-aware planners and some executors allocate scratch from inside their threads. */
typedef struct ak_allocator {
    void *(*alloc)(void *user, size_t size, size_t align);
    void (*free)(void *user, void *ptr);
    void *user;
} ak_allocator;

/**
 * Create a context. Defaults: n_threads = AK_NUM_THREADS or the number of online CPUs;
 * (a plan uses the thread count the context had when the plan was created);
 * ISA = best detected, capped by AK_MAX_ISA=scalar|avx2|avx512|avx512bf16; AK_FORCE_REF=1 makes
 * every run use the double-precision reference; AK_VERBOSE=1 prints kernel choices to stderr;
 * deterministic = 1 (results are bitwise identical for every thread count).
 */
AK_API ak_status ak_ctx_create(ak_ctx **out);
AK_API void ak_ctx_destroy(ak_ctx *ctx);
/** Thread count used by every run on this context (>= 1). Never touches the global OpenMP setting. */
AK_API ak_status ak_ctx_set_num_threads(ak_ctx *ctx, int n_threads);
AK_API int ak_ctx_get_num_threads(const ak_ctx *ctx);
/** Cap the ISA used by plans created afterwards. AK_ERR_UNSUPPORTED_ISA if above what the CPU has. */
AK_API ak_status ak_ctx_set_max_isa(ak_ctx *ctx, ak_isa isa);
/** The ISA plans on this context will use (detected, capped). */
AK_API ak_isa ak_ctx_get_isa(const ak_ctx *ctx);
/**
 * 1 = bitwise-identical results for any thread count (the default). The dense kernel always is; the
 * decode kernel then splits the keys into a fixed number of runs (64), independent of the threads.
 * 0 = decode splits into one run per thread (LeanAttention as published): still reproducible for a
 * fixed thread count. Read when a plan is created.
 */
AK_API ak_status ak_ctx_set_deterministic(ak_ctx *ctx, int deterministic);
/** 1 = route every run through the double-precision reference (same as AK_FORCE_REF=1). */
AK_API ak_status ak_ctx_set_force_ref(ak_ctx *ctx, int force_ref);
/** 1 = print kernel choice and rejections to stderr (same as AK_VERBOSE=1). */
AK_API ak_status ak_ctx_set_verbose(ak_ctx *ctx, int verbose);
/** Replace the allocator (NULL restores the default aligned malloc). */
AK_API ak_status ak_ctx_set_allocator(ak_ctx *ctx, const ak_allocator *alloc);
/** Message of the last failure on this context ("" if none). Valid until the next call on ctx. */
AK_API const char *ak_ctx_last_error(const ak_ctx *ctx);

/* ------------------------------------------------------------------------------------------------
 * Tensors
 * ---------------------------------------------------------------------------------------------- */

typedef enum ak_dtype {
    AK_F32 = 0,
    AK_BF16 = 1,   /* bfloat16, stored as uint16_t */
    AK_F16 = 2,    /* IEEE half, stored as uint16_t */
    AK_F64 = 3,    /* accepted only for outputs of the reference functions */
    AK_I8 = 4      /* int8 with a per-token-per-head f32 scale: KV caches only (value = scale * q) */
} ak_dtype;

AK_API const char *ak_dtype_name(ak_dtype t);
AK_API size_t ak_dtype_size(ak_dtype t);

#define AK_MAX_DIMS 4
#define AK_MAX_HEAD_DIM 512

/** A strided view: element (i0,i1,i2,i3) lives at data + sum(i_k * stride[k]) elements. */
typedef struct ak_tensor {
    void *data;
    ak_dtype dtype;
    int32_t ndim;
    int64_t shape[AK_MAX_DIMS];
    int64_t stride[AK_MAX_DIMS];   /* in elements, not bytes */
} ak_tensor;

/** Contiguous row-major 4-d view [n0][n1][n2][n3]. */
AK_API ak_tensor ak_tensor_4d(void *data, ak_dtype dtype, int64_t n0, int64_t n1, int64_t n2, int64_t n3);
/** Contiguous row-major 3-d / 2-d / 1-d views. */
AK_API ak_tensor ak_tensor_3d(void *data, ak_dtype dtype, int64_t n0, int64_t n1, int64_t n2);
AK_API ak_tensor ak_tensor_2d(void *data, ak_dtype dtype, int64_t n0, int64_t n1);
AK_API ak_tensor ak_tensor_1d(void *data, ak_dtype dtype, int64_t n0);
/**
 * View of a BSHD buffer ([B][L][H][D] in memory, as FlashAttention stores it) with the logical
 * shape [B][H][L][D] that attention functions take.
 */
AK_API ak_tensor ak_tensor_bshd(void *data, ak_dtype dtype, int64_t B, int64_t L, int64_t H, int64_t D);

/** Conversions (round-to-nearest-even; NaN stays NaN). */
AK_API uint16_t ak_f32_to_bf16(float x);
AK_API float ak_bf16_to_f32(uint16_t x);
AK_API uint16_t ak_f32_to_f16(float x);
AK_API float ak_f16_to_f32(uint16_t x);

/* ------------------------------------------------------------------------------------------------
 * Dense attention: descriptor -> plan -> run
 * ---------------------------------------------------------------------------------------------- */

/**
 * Problem descriptor. Always initialise with ak_attn_desc_init() (sets `size` and defaults), then
 * fill the fields. A plan depends only on this descriptor (shapes, options, metadata), so one plan
 * serves every layer of a model for a given batch.
 *
 * Shapes (logical): Q[B][Hq][Lq][d]  K[B][Hkv][Lk][d]  V[B][Hkv][Lk][dv]  O[B][Hq][Lq][dv]
 *                   LSE[B][Hq][Lq] (f32).
 *
 * Ragged batches: set cu_seqlens_q and cu_seqlens_k (int32 [batch+1], first entry 0, non-decreasing).
 * Then the tensors have leading dimension 1 and the L dimension is the packed total
 * (Q[1][Hq][total_q][d], ...); sequence b owns rows [cu_q[b], cu_q[b+1]) and keys
 * [cu_k[b], cu_k[b+1]); seqlen_q/seqlen_k are upper bounds of the per-sequence lengths (0 = derive).
 * A sequence may be empty. Packed rows at or beyond cu_q[batch] are padding: their O rows are set to
 * 0 and their LSE to -inf, their inputs never read.
 * seqused_k (optional, int32 [batch]): only the first seqused_k[b] keys of sequence b are used
 * (<= its length); it also defines Lk for the causal/window alignment (as in FlashAttention).
 * The metadata arrays are copied into the plan; the caller may free them after ak_plan_create.
 *
 * Masks (FlashAttention semantics, all combinable; a key is visible iff every active one admits it):
 *  - causal: bottom-right aligned: row i sees key j iff j <= i + Lk - Lq.
 *  - window_left / window_right: inclusive, -1 = unbounded: row i sees
 *    j in [i + Lk - Lq - left, i + Lk - Lq + right]. With causal set, right is 0.
 *  - softcap > 0: s <- softcap * tanh(s / softcap) on the scaled logit.
 *  - has_alibi: run-time slopes (ak_attn_tensors.alibi_slopes) add -slope_h * |i + Lk - Lq - j|.
 *  - has_sinks: run-time per-head sink logits join the softmax denominator with no value.
 */
typedef struct ak_attn_desc {
    size_t size;                 /* = sizeof(ak_attn_desc), set by ak_attn_desc_init */
    int32_t batch;               /* B >= 1 */
    int32_t num_heads_q;         /* Hq >= 1 */
    int32_t num_heads_kv;        /* Hkv >= 1, Hq % Hkv == 0 */
    int32_t seqlen_q;            /* Lq >= 0 (max per sequence when ragged) */
    int32_t seqlen_k;            /* Lk >= 0 (max per sequence when ragged) */
    int32_t head_dim;            /* d in [1, 512] */
    int32_t head_dim_v;          /* dv in [1, 512]; 0 = same as head_dim */
    ak_dtype dtype_q;            /* F32, BF16, F16 */
    ak_dtype dtype_kv;           /* F32, BF16, F16 (K and V share it) */
    ak_dtype dtype_o;            /* F32, BF16, F16 */
    float scale;                 /* softmax scale; NaN (the default) = 1/sqrt(head_dim) */
    int32_t causal;              /* 0/1 */
    int32_t window_left;         /* -1 = unbounded (default) */
    int32_t window_right;        /* -1 = unbounded (default) */
    float softcap;               /* 0 = off (default) */
    int32_t has_alibi;           /* 0/1: alibi_slopes given at run time */
    int32_t has_sinks;           /* 0/1: sinks given at run time */
    int32_t return_lse;          /* 0/1: lse tensor given at run time */
    const int32_t *cu_seqlens_q; /* NULL or int32[batch+1] */
    const int32_t *cu_seqlens_k; /* NULL or int32[batch+1]; set both or neither */
    const int32_t *seqused_k;    /* NULL or int32[batch] */
} ak_attn_desc;

/** Fill `desc` with defaults: batch 1, one head, d = 0 (must be set), f32, scale NaN, no masks. */
AK_API void ak_attn_desc_init(ak_attn_desc *desc);

/**
 * Tensors of one run. q,k,v,o are required; lse is required iff desc.return_lse; alibi_slopes iff
 * has_alibi (f32, shape [Hq] (ndim 1) or [B][Hq] (ndim 2)); sinks iff has_sinks (f32, shape [Hq]).
 * O may not overlap Q, K, V or LSE; overlap is judged on memory ranges (first to last element), so
 * an O interleaved with LSE or Q in one buffer is refused even without shared elements.
 */
typedef struct ak_attn_tensors {
    size_t size;           /* = sizeof(ak_attn_tensors), set by ak_attn_tensors_init */
    ak_tensor q, k, v, o;
    ak_tensor lse;         /* [B][Hq][Lq] f32 (ndim 3) */
    ak_tensor alibi_slopes;
    ak_tensor sinks;
} ak_attn_tensors;

AK_API void ak_attn_tensors_init(ak_attn_tensors *t);

typedef struct ak_plan ak_plan;

/**
 * Validate `desc` (shapes, options, metadata) and build a plan: the kernel chosen for the context's
 * ISA and the schedule of work items. On failure *out is NULL and the status says why.
 * The plan keeps a pointer to ctx: destroy the plan before the context.
 */
AK_API ak_status ak_plan_create(ak_ctx *ctx, const ak_attn_desc *desc, ak_plan **out);
AK_API void ak_plan_destroy(ak_plan *plan);

/**
 * Bytes of workspace ak_attention_run needs with this plan (0 when the plan runs the reference):
 *   64 + T * W,  T = the context's thread count when the plan was created, and per thread
 *   W = A(4*d*P) + A(4*dv*P) + A(4*N*P) + 4*A(4*M) + 3*A(8*M) + 2*A(4*M)
 *       + A(4*N*(R(max(d,dv)) + 16)) + A(4*N*(R(dv) + 16)) + A(4*ceil(N/2)*P) + A(4*M) + A(8*M) + A(4*N),
 *   A(x) = x rounded up to a multiple of 64, R(x) = x rounded up to a multiple of 16,
 *   M = the query-tile width (<= 128, a multiple of 16), P = M + 16, N = 64 keys per tile.
 * Independent of the sequence lengths: working memory is O(tile), never O(L^2) (about 0.3 MiB per
 * thread at d = dv = 128).
 */
AK_API size_t ak_plan_workspace_size(const ak_plan *plan);

/** Name of the kernel the plan runs, e.g. "ak_k_fwd_f32_12x32__avx512". */
AK_API const char *ak_plan_kernel_name(const ak_plan *plan);
/** Multi-line explanation: chosen kernel, why, and why every other kernel was rejected. */
AK_API const char *ak_plan_explain(const ak_plan *plan);

/**
 * Run the plan. Contract:
 *   q: [B][Hq][Lq][d] dtype_q      k: [B][Hkv][Lk][d] dtype_kv    v: [B][Hkv][Lk][dv] dtype_kv
 *   o: [B][Hq][Lq][dv] dtype_o     lse: [B][Hq][Lq] f32 (natural log; includes the sink term)
 *   (B = 1 and L = packed totals when the plan is ragged.)
 *   O_i = sum_j softmax_j(s_ij) v_j over the visible keys j;  LSE_i = log(e^sink + sum_j e^s_ij).
 * Errors: a tensor whose shape disagrees with the plan -> AK_ERR_SHAPE_MISMATCH; a valid dtype that
 * differs from the descriptor's -> AK_ERR_PLAN_MISMATCH; a dtype invalid in that role ->
 * AK_ERR_UNSUPPORTED_DTYPE; negative strides or zero output strides -> AK_ERR_BAD_STRIDE; output
 * elements aliasing each other, or O/LSE memory ranges overlapping Q, K, V -> AK_ERR_OUTPUT_OVERLAP;
 * packed totals cu_seqlens[batch] beyond the tensors' L -> AK_ERR_BAD_METADATA.
 * workspace: NULL (allocated through the context's allocator for this call) or at least
 * ak_plan_workspace_size(plan) bytes, any alignment. Every element of o (and lse) is written.
 * Exact (fp32 accumulation); the result is bitwise identical for every thread count.
 */
AK_API ak_status ak_attention_run(ak_plan *plan, const ak_attn_tensors *t, void *workspace,
                                  size_t workspace_size);

/** One-shot convenience: plan_create + run + plan_destroy. */
AK_API ak_status ak_attention(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t);

/**
 * The double-precision reference: materialises each head's full score matrix with explicit masks,
 * accumulates in double. Same contract as ak_attention, except that o and lse may also be AK_F64.
 * Slow (O(Lq*Lk) memory per head); meant as an oracle for tests and `attnkit check`.
 */
AK_API ak_status ak_attention_ref(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t);

/* ------------------------------------------------------------------------------------------------
 * Merging partial results
 * ---------------------------------------------------------------------------------------------- */

/**
 * Merge two partial attention results computed over DISJOINT key sets of the same queries:
 *   lse = logaddexp(lse_a, lse_b);  o = e^(lse_a - lse) * o_a + e^(lse_b - lse) * o_b.
 * A partial with lse = -inf has weight 0; if both are -inf, o = 0 and lse = -inf.
 * Shapes: o_a, o_b, o_out [B][H][L][dv] (f32, bf16 or f16, each its own dtype);
 *         lse_a, lse_b, lse_out [B][H][L] f32 (natural log). lse_out may be NULL.
 * o_out / lse_out may be exactly o_a / lse_a (in place); any other overlap is refused.
 * Element-wise, so the result is independent of the thread count.
 */
AK_API ak_status ak_attn_merge(ak_ctx *ctx, const ak_tensor *o_a, const ak_tensor *lse_a,
                               const ak_tensor *o_b, const ak_tensor *lse_b, const ak_tensor *o_out,
                               const ak_tensor *lse_out);

/* ------------------------------------------------------------------------------------------------
 * KV caches (contiguous or paged) and decode attention
 * ---------------------------------------------------------------------------------------------- */

/** Layout of one page of a paged KV cache (both are stride choices of the pool tensor). */
typedef enum ak_kv_layout {
    AK_KV_NHD = 0,   /* page = [page_size][Hkv][d]  (token-major, vLLM / FlashInfer default) */
    AK_KV_HND = 1    /* page = [Hkv][page_size][d]  (head-major) */
} ak_kv_layout;

/**
 * Where the keys and values of B sequences live, and how many tokens each holds.
 *
 * Storage (the tensors of ak_kv_tensors; the last dimension must have stride 1):
 *   contiguous (page_size = 0): k [B][Hkv][capacity][d], v [B][Hkv][capacity][dv]; any other strides
 *       (BSHD, one big buffer shared by several sequences, ...).
 *   paged (page_size >= 1, any value): pools of num_pages pages;
 *       NHD: k [num_pages][page_size][Hkv][d]     HND: k [num_pages][Hkv][page_size][d]   (v with dv).
 *   dtype AK_I8: k_scale / v_scale (f32) hold one scale per token and head, shaped like k without
 *       its last dimension: [B][Hkv][capacity], NHD [num_pages][page_size][Hkv], HND [num_pages][Hkv][page_size].
 *       The value is scale * int8.
 *
 * Lengths and page tables (int32; copied into a plan by ak_decode_plan_create). Exactly one of:
 *   FlashAttention vocabulary: seqlens [B] (tokens per sequence), and for a paged cache
 *       block_table [B][max_pages_per_seq]: token p of sequence b is slot p % page_size of page
 *       block_table[b][p / page_size]; only the first ceil(seqlens[b] / page_size) entries are read.
 *   FlashInfer vocabulary (paged only): kv_indptr [B+1] (0-based, non-decreasing),
 *       kv_indices [kv_indptr[B]] (page ids in order), kv_last_page_len [B] in [1, page_size] for a
 *       sequence with pages (ignored for a sequence with none):
 *       seqlen_b = (pages_b - 1) * page_size + kv_last_page_len[b], or 0 without pages.
 * Errors: a page id outside [0, num_pages) -> AK_ERR_PAGE_OUT_OF_RANGE; any other inconsistency
 * (indptr not starting at 0 or decreasing, last_page_len out of range, negative length, a table too
 * short for its length, a contiguous length above capacity, both or neither vocabulary) ->
 * AK_ERR_BAD_METADATA. Every message names the sequence and the field.
 */
typedef struct ak_kv_desc {
    size_t size;                     /* = sizeof(ak_kv_desc), set by ak_kv_desc_init */
    int32_t batch;                   /* B >= 1 sequences */
    int32_t num_heads_kv;            /* Hkv >= 1 */
    int32_t head_dim;                /* d in [1, AK_MAX_HEAD_DIM] */
    int32_t head_dim_v;              /* dv; 0 = head_dim */
    ak_dtype dtype;                  /* F32, F16, BF16 or I8 */
    int32_t page_size;               /* 0 = contiguous */
    int32_t capacity;                /* contiguous: tokens per sequence (the tensors' L) */
    int32_t num_pages;               /* paged: pages in each pool */
    ak_kv_layout layout;             /* paged: NHD or HND */
    const int32_t *seqlens;          /* [B] (FlashAttention vocabulary; required when contiguous) */
    const int32_t *block_table;      /* [B][max_pages_per_seq] or NULL */
    int32_t max_pages_per_seq;       /* row length of block_table */
    const int32_t *kv_indptr;        /* [B+1] (FlashInfer vocabulary) or NULL */
    const int32_t *kv_indices;       /* [kv_indptr[B]] */
    const int32_t *kv_last_page_len; /* [B] */
} ak_kv_desc;

/** Defaults: batch 1, one head, d = 0 (must be set), f32, contiguous, NHD, no metadata. */
AK_API void ak_kv_desc_init(ak_kv_desc *kv);

/** The memory of a KV cache: k, v (required), k_scale, v_scale (AK_I8 only). */
typedef struct ak_kv_tensors {
    size_t size;                     /* = sizeof(ak_kv_tensors), set by ak_kv_tensors_init */
    ak_tensor k, v, k_scale, v_scale;
} ak_kv_tensors;

AK_API void ak_kv_tensors_init(ak_kv_tensors *t);

/** Number of tokens sequence b holds per `kv` (validated: statuses as above). */
AK_API ak_status ak_kv_seqlen(ak_ctx *ctx, const ak_kv_desc *kv, int32_t b, int32_t *len);

/**
 * Convert a block table to the FlashInfer CSR vocabulary in O(B + pages):
 *   pages_b = ceil(seqlens[b] / page_size); kv_indptr[b+1] = kv_indptr[b] + pages_b;
 *   kv_indices = the first pages_b entries of each row; kv_last_page_len[b] = seqlens[b] - (pages_b-1)*page_size
 *   (0 for an empty sequence, where it is ignored).
 * kv_indptr has batch+1 entries; kv_indices must hold max_indices entries (AK_ERR_CAPACITY if the
 * tables need more); kv_last_page_len has batch entries. Page ids are checked against num_pages.
 */
AK_API ak_status ak_kv_block_table_to_csr(ak_ctx *ctx, int32_t batch, int32_t page_size, int32_t num_pages,
                                          const int32_t *seqlens, const int32_t *block_table,
                                          int32_t max_pages_per_seq, int32_t *kv_indptr, int32_t *kv_indices,
                                          int32_t max_indices, int32_t *kv_last_page_len);

/**
 * Append new rows to every sequence of a cache: rows r < n_new[b] of k_new / v_new (shapes
 * [B][Hkv][n][d] / [B][Hkv][n][dv], f32 / bf16 / f16, any strides) are written at token positions
 * seqlen_b + r of sequence b, converted to the cache dtype (AK_I8: symmetric, scale = max|x| / 127
 * per token and head, round to nearest; an all-zero row gets scale 0). n_new: int32 [B], each in
 * [0, n], or NULL = n for every sequence. The metadata in `kv` describes the cache BEFORE the append;
 * the caller then advances its own lengths (ak_kv_cache does all of this for you).
 * Capacity: contiguous -> seqlen_b + n_new[b] <= capacity; block_table -> <= max_pages_per_seq *
 * page_size (the pages must already be in the table); CSR -> <= pages_b * page_size.
 * Exceeding it returns AK_ERR_CAPACITY and writes nothing. Sequences are written in parallel, so
 * an append in which two rows would land in the same slot (two sequences sharing a page, a page
 * listed twice) is refused with AK_ERR_OUTPUT_OVERLAP, as is a cache tensor with a zero stride.
 */
AK_API ak_status ak_kv_append(ak_ctx *ctx, const ak_kv_desc *kv, const ak_kv_tensors *cache, const ak_tensor *k_new,
                              const ak_tensor *v_new, const int32_t *n_new);

/**
 * A KV cache that attnkit owns: page pools plus per-sequence page lists with a free list, for
 * users who do not bring their own (FlashInfer-style CSR views, any page size and layout).
 */
typedef struct ak_kv_cache ak_kv_cache;

typedef struct ak_kv_cache_config {
    size_t size;             /* = sizeof(ak_kv_cache_config), set by ak_kv_cache_config_init */
    int32_t num_heads_kv, head_dim, head_dim_v;   /* dv 0 = d */
    ak_dtype dtype;          /* F32, F16, BF16, I8 */
    int32_t page_size;       /* >= 1 (default 16) */
    int32_t num_pages;       /* pages in each pool (>= 1) */
    ak_kv_layout layout;     /* default NHD */
    int32_t max_seqs;        /* sequence ids are 0 .. max_seqs-1 */
} ak_kv_cache_config;

AK_API void ak_kv_cache_config_init(ak_kv_cache_config *cfg);
/**
 * Allocate the pools (through the context's allocator, 64-byte aligned, not zero-filled) and the
 * tables. The cache keeps a pointer to ctx (its errors are reported there): destroy the cache before
 * the context. A cache is not thread-safe: one thread at a time may append, reset or view.
 */
AK_API ak_status ak_kv_cache_create(ak_ctx *ctx, const ak_kv_cache_config *cfg, ak_kv_cache **out);
AK_API void ak_kv_cache_destroy(ak_kv_cache *cache);
/**
 * Append rows k_new [Hkv][n][d] and v_new [Hkv][n][dv] (3-d, f32/bf16/f16, any strides) to sequence
 * `seq`, taking pages from the free list. AK_ERR_CAPACITY (and nothing changes) when the free pages
 * do not suffice.
 */
AK_API ak_status ak_kv_cache_append(ak_kv_cache *cache, int32_t seq, const ak_tensor *k_new, const ak_tensor *v_new);
/** Drop a sequence: its pages go back to the free list and its length to 0. */
AK_API ak_status ak_kv_cache_reset(ak_kv_cache *cache, int32_t seq);
AK_API ak_status ak_kv_cache_seqlen(const ak_kv_cache *cache, int32_t seq, int32_t *len);
/** Pages on the free list (0 for NULL). */
AK_API int32_t ak_kv_cache_free_pages(const ak_kv_cache *cache);
/**
 * Describe sequences seqs[0..n) (in that order) as a CSR-paged ak_kv_desc plus its tensors, for
 * ak_decode_desc.kv / ak_decode_tensors.kv. The metadata arrays belong to the cache and stay valid
 * until the next view, append, reset or destroy of this cache.
 */
AK_API ak_status ak_kv_cache_view(ak_kv_cache *cache, const int32_t *seqs, int32_t n, ak_kv_desc *kv,
                                  ak_kv_tensors *t);

/**
 * Decode attention: a few new query rows per sequence against each sequence's KV cache.
 *
 * Shapes:  Q[B][Hq][q_len][d]  O[B][Hq][q_len][dv]  LSE[B][Hq][q_len] (f32, natural log)
 *          (with qo_indptr: Q[1][Hq][total][d], sequence b owns rows [qo_indptr[b], qo_indptr[b+1]),
 *          each at most q_len; rows at or beyond qo_indptr[B] are padding: O = 0, LSE = -inf).
 * Sequence b has n_b = seqlen_b keys in kv (plus P keys of the shared prefix, if any, which come
 * first). Its query rows are its LAST rows: row i (of nq_b) sits at absolute position
 * P + n_b - nq_b + i, and every mask of ak_attn_desc applies with FlashAttention semantics on
 * absolute positions (bottom-right causal, inclusive windows, softcap, ALiBi on |pos_i - pos_j|,
 * sinks, fully-masked rows -> O = 0, LSE = -inf or the sink). A sequence with no keys is legal.
 * Exactly what ak_attention computes with Lq = nq_b, Lk = P + n_b and the gathered keys.
 *
 * GQA: the g = Hq/Hkv query heads of a KV head and the q_len rows are one tile, so every K/V byte
 * is read once per KV head, not once per query head.
 *
 * Cascade / shared prefix: set `prefix` to a batch-1 cache (contiguous or paged) whose keys precede
 * every sequence's own keys; its K/V is read once for all B sequences (their query rows share the
 * tile), and the two partial results are merged by LSE.
 *
 * Scheduling (LeanAttention / stream-K): the keys of every (sequence or prefix, KV head) are cut
 * into tiles of tile_n keys; the list of all tiles is split into num_workers contiguous runs of equal
 * length (they may cross head and sequence boundaries); a run's partial results are merged (LSE
 * merge, as ak_attn_merge) by the last worker to finish a row -- no worker ever waits.
 * num_workers = 0 picks: 64 when the context is deterministic (the default; the runs then do not
 * depend on the thread count, so results are bitwise identical for every thread count), else the
 * thread count -- in both cases at most ceil(T / 4) for T tiles in all, so that a run has at least
 * 4 tiles. Results are always bitwise reproducible for a fixed num_workers. Split rows are merged
 * n-way in double (the LSE merge), so accuracy does not degrade with the number of runs.
 */
typedef struct ak_decode_desc {
    size_t size;                 /* = sizeof(ak_decode_desc), set by ak_decode_desc_init */
    int32_t num_heads_q;         /* Hq, a multiple of kv.num_heads_kv */
    int32_t q_len;               /* query rows per sequence, 1 .. 16 (max per sequence with qo_indptr) */
    const int32_t *qo_indptr;    /* NULL or int32 [B+1]: ragged query rows (0 .. q_len each) */
    ak_dtype dtype_q, dtype_o;   /* F32, BF16, F16 */
    float scale;                 /* NaN = 1/sqrt(d) */
    int32_t causal;
    int32_t window_left, window_right;
    float softcap;
    int32_t has_alibi, has_sinks, return_lse;
    ak_kv_desc kv;               /* the per-sequence caches */
    const ak_kv_desc *prefix;    /* NULL, or a shared prefix cache (batch 1, same Hkv, d, dv) */
    int32_t tile_n;              /* keys per Lean tile, 1 .. 4096; 0 = auto (256; 128 when d or dv > 128; NHD pages: 64..256) */
    int32_t num_workers;         /* Lean workers (runs); 0 = auto, see above */
} ak_decode_desc;

AK_API void ak_decode_desc_init(ak_decode_desc *desc);

typedef struct ak_decode_tensors {
    size_t size;                 /* = sizeof(ak_decode_tensors), set by ak_decode_tensors_init */
    ak_tensor q, o, lse;         /* lse iff return_lse */
    ak_tensor alibi_slopes;      /* [Hq] or [B][Hq] f32, iff has_alibi */
    ak_tensor sinks;             /* [Hq] f32, iff has_sinks */
    ak_kv_tensors kv;            /* the caches of desc.kv */
    ak_kv_tensors prefix;        /* the cache of desc.prefix (if any) */
} ak_decode_tensors;

AK_API void ak_decode_tensors_init(ak_decode_tensors *t);

/**
 * Validate the descriptor and its metadata and build the plan (the Lean schedule). A plan is per
 * decode step (it depends on the lengths); ak_plan_kernel_name / explain / workspace_size /
 * destroy apply. The workspace is O(threads * tile + split runs * rows * dv).
 */
AK_API ak_status ak_decode_plan_create(ak_ctx *ctx, const ak_decode_desc *desc, ak_plan **out);
/** Run a decode plan (AK_ERR_PLAN_MISMATCH for a dense plan). Same workspace rules as ak_attention_run. */
AK_API ak_status ak_decode_run(ak_plan *plan, const ak_decode_tensors *t, void *workspace, size_t workspace_size);
/** One-shot: plan + run + destroy. */
AK_API ak_status ak_decode(ak_ctx *ctx, const ak_decode_desc *desc, const ak_decode_tensors *t);
/** Double-precision reference of ak_decode (full score rows, explicit masks); o/lse may be AK_F64. */
AK_API ak_status ak_decode_ref(ak_ctx *ctx, const ak_decode_desc *desc, const ak_decode_tensors *t);

/* ------------------------------------------------------------------------------------------------
 * Linear attention: Lightning Attention (TransNormerLLM), causal with per-head decay
 * ---------------------------------------------------------------------------------------------- */

/** Per-head decay conventions found in public code (see docs/LINEAR.md). */
typedef enum ak_la_decay_mode {
    AK_LA_DECAY_OFFICIAL = 0,  /* lightning-attention / TNL: ALiBi-style slopes, f_l = 1 - l/(L-1) + 1e-5 */
    AK_LA_DECAY_MINIMAX = 1,   /* MiniMax: s_h = 2^(-8h/H) for any H, f_l = 1 - l/(L-1+1e-5) + 1e-5 */
    AK_LA_DECAY_PAPER = 2      /* the TNL paper's formula as FLA implements it: s_h = 8h/H (h from 0), f_l = 1 - l/L */
} ak_la_decay_mode;

/**
 * log_decay[h] = -s_h * f_l (<= 0) for heads h = 0..num_heads-1 of layer `layer` (0-based) of `n_layers`:
 * the per-head decay is lambda_h = exp(log_decay[h]). n_layers = 1 gives f = 1 + 1e-5 (OFFICIAL, MINIMAX)
 * or 1 (PAPER).
 */
AK_API ak_status ak_la_log_decay(ak_ctx *ctx, ak_la_decay_mode mode, int32_t num_heads, int32_t layer,
                                 int32_t n_layers, float *log_decay);

/**
 * Causal linear attention of one layer, per (sequence, head), with decay lambda = exp(log_decay[h]):
 *   S_t = lambda S_{t-1} + k_t v_t^T   (S: d x e, fp32; S_{-1} = state_in or 0)
 *   o_t = S_t^T (scale q_t)             -- no softmax, no denominator
 * equivalently o_t = sum_{s <= t} lambda^(t-s) (scale q_t . k_s) v_s (+ lambda^(t+1) S_{-1}^T scale q_t).
 * Shapes: Q, K [B][H][T][d], V, O [B][H][T][e] (any strides; ragged: cu_seqlens, tensors [1][H][total][.],
 * the state restarts at every sequence), log_decay [H] f32 (finite, <= 0, iff has_decay; otherwise lambda = 1),
 * state_in / state_out [B][H][d][e] f32 (iff has_initial_state / return_final_state; state_out = the
 * state after the sequence's last token; it may be the very same view as state_in). Ragged: packed rows
 * past cu_seqlens[batch] are padding, their output rows are written as zeros.
 */
/**
 * Output normalization (TNL's NormAttention, spec: over all heads of a token, no learnable gain):
 *   x = the linear-attention output above, per token (b, t) all H heads together (N = H e values):
 *   AK_LA_NORM_SRMS: o[b][h][t][.] = x[b][h][t][.] / sqrt(mean_{h', y} x[b][h'][t][y]^2 + norm_eps)
 * then, iff has_gate, times gate[b][h][t][.] (TNL: O = SRMSNorm(lightning(Q, K, V)) (.) U). The state is
 * not affected. x is kept in fp32 (a temporary [B][H][T][e] f32 buffer when o is not f32).
 */
typedef enum ak_la_norm {
    AK_LA_NORM_NONE = 0,
    AK_LA_NORM_SRMS = 1
} ak_la_norm;

typedef struct ak_la_desc {
    size_t size;                 /* = sizeof(ak_la_desc), set by ak_la_desc_init */
    int32_t batch;               /* B >= 1 (number of sequences when ragged) */
    int32_t num_heads;           /* H >= 1 */
    int32_t seqlen;              /* T >= 0 (ignored when ragged) */
    int32_t head_dim;            /* d in [1, 512] */
    int32_t head_dim_v;          /* e in [1, 512]; 0 = d */
    ak_dtype dtype_qkv;          /* F32, BF16, F16 (q, k, v share it) */
    ak_dtype dtype_o;            /* F32, BF16, F16 (F64 also for the reference) */
    float scale;                 /* c, multiplies q; default 1 (TNL: no 1/sqrt(d)) */
    int32_t has_decay;           /* 0: lambda = 1 */
    int32_t has_initial_state;
    int32_t return_final_state;
    int32_t block;               /* block length of the chunked form; 0 = auto (64); at most 4096 */
    const int32_t *cu_seqlens;   /* NULL or int32 [batch+1] */
    int32_t norm;                /* ak_la_norm: output normalization (default AK_LA_NORM_NONE) */
    float norm_eps;              /* > 0, finite; default 1e-6 */
    int32_t has_gate;            /* multiply the (normalized) output by tensors.gate */
} ak_la_desc;

AK_API void ak_la_desc_init(ak_la_desc *desc);

typedef struct ak_la_tensors {
    size_t size;                 /* = sizeof(ak_la_tensors), set by ak_la_tensors_init */
    ak_tensor q, k, v, o;
    ak_tensor log_decay;         /* [H] f32 */
    ak_tensor state_in;          /* [B][H][d][e] f32 */
    ak_tensor state_out;         /* [B][H][d][e] f32 */
    ak_tensor gate;              /* [B][H][T][e], dtype_qkv, iff has_gate */
} ak_la_tensors;

AK_API void ak_la_tensors_init(ak_la_tensors *t);

/** Chunked forward (Lightning Attention-2: intra-block masked product + inter-block state), fp32 state. */
AK_API ak_status ak_la_forward(ak_ctx *ctx, const ak_la_desc *desc, const ak_la_tensors *t);
/** The recurrent form, one token at a time (decoding: T = 1 per call, state in -> state out). */
AK_API ak_status ak_la_recurrent(ak_ctx *ctx, const ak_la_desc *desc, const ak_la_tensors *t);
/** Double-precision reference: the masked O(T^2) left product with explicit decay powers (plus the initial
 *  state term), and the final state by the recurrence in double. o may be AK_F64. */
AK_API ak_status ak_la_forward_ref(ak_ctx *ctx, const ak_la_desc *desc, const ak_la_tensors *t);

/**
 * Gradients of ak_la_forward. Inputs: d_o = dLoss/dO [B][H][T][e] (f32/bf16/f16), and, iff
 * has_d_state_out, d_state_out = dLoss/d(final state) [B][H][d][e] f32. Outputs: dq, dk [B][H][T][d],
 * dv [B][H][T][e] (f32/bf16/f16; f64 for the reference) and, iff desc.has_initial_state, d_state_in
 * [B][H][d][e] f32. The forward tensors (q, k, v, log_decay, state_in) come from ak_la_tensors; o and
 * state_out are not needed. No gradient for the decay (fixed, as in TNL). Same shapes, ragged rules and
 * padding (padding rows of dq/dk/dv/d_gate are zeroed) as the forward. With a norm or a gate, d_o is the
 * gradient of the final (normalized, gated) output; the pre-norm output is recomputed (one more forward):
 * SRMS backward dx = r (dy - y mean(y . dy)), y = x r; d_gate = d_o . (normalized x).
 */
typedef struct ak_la_grads {
    size_t size;                 /* = sizeof(ak_la_grads), set by ak_la_grads_init */
    ak_tensor d_o;
    int32_t has_d_state_out;
    ak_tensor d_state_out;
    ak_tensor dq, dk, dv;
    ak_tensor d_state_in;
    ak_tensor d_gate;            /* [B][H][T][e] (f32/bf16/f16; f64 for the reference), iff desc.has_gate */
} ak_la_grads;

AK_API void ak_la_grads_init(ak_la_grads *g);
/** Chunked backward: a forward sweep for dq (rebuilding the block states) and a reverse sweep for dk, dv. */
AK_API ak_status ak_la_backward(ak_ctx *ctx, const ak_la_desc *desc, const ak_la_tensors *t, const ak_la_grads *g);
/** Double-precision analytic gradients of the materialised form (tests only). */
AK_API ak_status ak_la_backward_ref(ak_ctx *ctx, const ak_la_desc *desc, const ak_la_tensors *t, const ak_la_grads *g);

/* ------------------------------------------------------------------------------------------------
 * Sparse attention: a plan of (query, key) pairs, one executor, structured patterns
 * ---------------------------------------------------------------------------------------------- */

/**
 * A sparse pattern ("sparse plan"): which (query row, key) pairs of each (sequence, head) are
 * computed. Immutable once created; made by the pattern builders below, by an ak_sparse_builder, from
 * raw CSR arrays (ak_sparse_create) or loaded from its JSON form (ak_sparse_from_json).
 *
 * Geometry: n_batch (1 = shared by every sequence, or B), n_heads (1 = shared by every head, Hkv = one
 * per KV head shared by its G query heads -- K/V tiles are then shared --, or Hq), nq query rows and
 * nk keys per sequence; row i sits at position pos(i) = i + nk - nq (bottom-right, as FlashAttention).
 * The query rows of each (b, h) are cut into n_qblocks blocks: fixed tiles of block_q rows
 * (block qb = rows [qb*block_q, min(nq, (qb+1)*block_q))), or explicit gather lists (qrows: any row
 * set per block, e.g. a permutation or the queries of one neighborhood tile; each row at most once per
 * (b, h), or with combine = AK_SPARSE_MEAN once per block; rows in no block get O = 0, LSE = -inf).
 *
 * Each block qb of (b, h) -- list r = (b * n_heads + h) * n_qblocks + qb -- names its keys with:
 *   spans [lo, hi)      contiguous keys at any alignment
 *   cols  j             single keys ("vertical lines", gathered tokens)
 *   bands [dlo, dhi]    diagonals: key pos(i) - delta for every delta in [dlo, dhi] (inclusive; a
 *                       negative delta is a future key; [0, w-1] is a causal sliding window of w)
 *   na                  the NATTEN neighborhood of each row (geometry in ak_sparse_na, below)
 * Row i of the block sees key j iff 0 <= j < nk, (causal => j <= pos(i)), and some entry of its list
 * covers (i, j). Set semantics: a pair is computed once however many entries cover it.
 * Normal form (required by ak_sparse_create; builders produce it): spans non-empty, in [0, nk],
 * sorted, non-overlapping (touching is fine); cols strictly increasing in [0, nk), none inside a span;
 * bands dlo <= dhi, sorted, disjoint. Violations -> AK_ERR_BAD_PLAN with the list and entry named.
 */
typedef struct ak_sparse ak_sparse;

/**
 * Neighborhood Attention geometry (NATTEN / GNA), for plans whose lists use `na`: tokens form a
 * row-major grid extent[0] x ... x extent[ndim-1] (last axis fastest; nq = nk = the product). Per
 * axis: kernel k (1 <= k, k * dilation <= extent), dilation >= 1, stride 1 <= s <= k, causal 0/1.
 * A query attends keys of its own dilation group (coordinate mod dilation) on every axis; in-group
 * index u, group length Lg = ceil((extent - g) / dilation), left = k / 2, right = k - 1 - left:
 *   non-causal: leader = min(floor(u/s)*s + floor(s/2), Lg-1); c = clamp(leader, left, Lg-1-right);
 *               window [c - left, c + right]  (exactly k keys, shifted inward at borders)
 *   causal:     leader = min(floor(u/s)*s + s-1, Lg-1); window [max(leader - k + 1, 0), u]
 * The neighborhood is the product (box) of the per-axis windows.
 * A list with `na` must keep all its rows in one dilation group of the last axis (builders do).
 */
typedef struct ak_sparse_na {
    int32_t ndim;                /* 0 = no neighborhood geometry; 1..3 */
    int32_t extent[3], kernel[3], dilation[3], stride[3], causal[3];
} ak_sparse_na;

/** Raw CSR form of a plan. Offsets are int64 [R + 1] (first 0, non-decreasing), R = n_batch * n_heads * n_qblocks. */
typedef struct ak_sparse_desc {
    size_t size;                 /* = sizeof(ak_sparse_desc), set by ak_sparse_desc_init */
    int32_t n_batch, n_heads;    /* >= 1 */
    int32_t nq, nk;              /* >= 0 */
    int32_t causal;              /* 0/1 (intersected with the attention descriptor's own causal flag) */
    int32_t block_q;             /* rows per fixed block, >= 1 (with qrows: the largest block's size is used) */
    int32_t n_qblocks;           /* ceil(nq / block_q) with fixed blocks; any count >= 0 with qrows */
    const int64_t *qrow_off;     /* NULL = fixed blocks, else [R+1] */
    const int32_t *qrows;        /* rows in [0, nq) */
    const int64_t *span_off;     /* NULL = no spans, else [R+1] */
    const int32_t *span_lo, *span_hi;
    const int64_t *col_off;      /* NULL = no cols */
    const int32_t *col_idx;
    const int64_t *band_off;     /* NULL = no bands */
    const int32_t *band_lo, *band_hi;
    const uint8_t *na;           /* NULL or [R]: 1 = the list includes each row's neighborhood */
    ak_sparse_na na_geom;        /* required (ndim >= 1) iff some na[r] is 1 */
    const char *name;            /* optional description kept with the plan ("power(bs=256,w=5)") */
    /* Optional refinements of the content-aware methods (NULL / 0 = none). Per plan (batch, head),
     * bh = b * n_heads + h:
     *   key_bias [n_batch * n_heads][nk]: finite; added to the logit of every active pair of that (b, h),
     *            after the scale and softcap: logit(i, j) = s_ij + key_bias[bh][j] (DMA's value-derived bias).
     *   key_score [n_batch * n_heads][nk] and row_thresh [n_batch * n_heads][nq], both or neither, no NaN:
     *            row i sees listed key j only if key_score[bh][j] >= row_thresh[bh][i] (a per-row cut of the
     *            list: DMA's exact per-row top-w; row_thresh = -inf keeps the whole list, +inf drops it). */
    const float *key_bias;
    const float *key_score;
    const float *row_thresh;
    int32_t combine;             /* AK_SPARSE_WRITE or AK_SPARSE_MEAN (below) */
} ak_sparse_desc;

/**
 * How outputs combine (gather mode only). AK_SPARSE_WRITE: each row in at most one block of its (b, h).
 * AK_SPARSE_MEAN: a row may sit in several blocks of its (b, h) (at most once per block); each block
 * attends on its own (its own softmax) and the row's output is the mean of its per-block outputs, its LSE
 * log(sum over its blocks of e^LSE_block) (routing attention's scatter-mean; a block without visible keys
 * contributes O = 0). Rows in no block: O = 0, LSE = -inf.
 */
#define AK_SPARSE_WRITE 0
#define AK_SPARSE_MEAN 1

AK_API void ak_sparse_desc_init(ak_sparse_desc *desc);
/** Validate the arrays (normal form, bounds) and copy them into a new plan. */
AK_API ak_status ak_sparse_create(ak_ctx *ctx, const ak_sparse_desc *desc, ak_sparse **out);
AK_API void ak_sparse_destroy(ak_sparse *sp);
/** The plan's geometry and its arrays (pointers into the plan, valid until it is destroyed). */
AK_API ak_status ak_sparse_get_desc(const ak_sparse *sp, ak_sparse_desc *desc);

/**
 * Incremental construction: add entries in any order, duplicates and overlaps allowed; finish()
 * normalises (sorts and merges spans, drops cols inside spans, merges overlapping bands) and creates
 * the plan. Geometry fields are read from `geom` (its arrays are ignored); geom->n_qblocks = 0 means
 * ceil(nq / block_q); any other count is accepted for gather mode (rows added with add_row), and finish()
 * checks it against nq / block_q when no row was added. A builder with no entries gives an empty plan.
 */
typedef struct ak_sparse_builder ak_sparse_builder;
AK_API ak_status ak_sparse_builder_create(ak_ctx *ctx, const ak_sparse_desc *geom, ak_sparse_builder **out);
AK_API ak_status ak_sparse_builder_add_span(ak_sparse_builder *b, int32_t batch, int32_t head, int32_t qblock,
                                            int32_t lo, int32_t hi);
AK_API ak_status ak_sparse_builder_add_col(ak_sparse_builder *b, int32_t batch, int32_t head, int32_t qblock, int32_t j);
AK_API ak_status ak_sparse_builder_add_band(ak_sparse_builder *b, int32_t batch, int32_t head, int32_t qblock,
                                            int32_t dlo, int32_t dhi);
AK_API ak_status ak_sparse_builder_set_na(ak_sparse_builder *b, int32_t batch, int32_t head, int32_t qblock);
/** Gather mode: append a row to block qblock (the builder's geometry must then give n_qblocks). */
AK_API ak_status ak_sparse_builder_add_row(ak_sparse_builder *b, int32_t batch, int32_t head, int32_t qblock, int32_t row);
/**
 * Per-(batch, head) refinements (copied; see ak_sparse_desc): bias [nk] (NULL clears), key_score [nk]
 * with row_thresh [nq] (both or neither). Heads never set get bias 0 and keep their whole lists. The
 * geometry's `combine` is read at builder_create.
 */
AK_API ak_status ak_sparse_builder_set_key_bias(ak_sparse_builder *b, int32_t batch, int32_t head, const float *bias);
AK_API ak_status ak_sparse_builder_set_row_thresh(ak_sparse_builder *b, int32_t batch, int32_t head,
                                                  const float *key_score, const float *row_thresh);
AK_API ak_status ak_sparse_builder_finish(ak_sparse_builder *b, ak_sparse **out);
AK_API void ak_sparse_builder_destroy(ak_sparse_builder *b);

/**
 * The element mask of (plan batch b, plan head h): mask[i * nk + j] = 1 iff row i sees key j
 * (uint8, nq * nk bytes, written in full; with AK_SPARSE_MEAN: in some block of the row). Computed entry
 * by entry, independently of the executor: the oracle of the tests and the source of `attnkit plan`'s picture.
 */
AK_API ak_status ak_sparse_mask(const ak_sparse *sp, int32_t b, int32_t h, uint8_t *mask);
/** One row of that mask: keys[j] = 1 iff row `row` of (b, h) sees key j (nk bytes); O(nk) memory. */
AK_API ak_status ak_sparse_row_mask(const ak_sparse *sp, int32_t b, int32_t h, int32_t row, uint8_t *keys);
/**
 * Downsampled picture of (b, h): grid[r * cols + c] = the fraction of active pairs among the (row, key)
 * cells that map to grid cell (r, c) (rows scaled by rows / nq, keys by cols / nk); 1 <= rows <= nq,
 * 1 <= cols <= nk. Cost O(nq * nk / 64) bit operations; no O(nq * nk) memory.
 */
AK_API ak_status ak_sparse_density_grid(const ak_sparse *sp, int32_t b, int32_t h, int32_t rows, int32_t cols, float *grid);

/**
 * Statistics. pairs = active (row, key) pairs summed over every plan batch and head (exact, row by
 * row); dense_pairs = nq * nk per (b, h), causal_pairs = the pairs causal attention would see;
 * density = pairs / causal_pairs for a causal plan, pairs / dense_pairs otherwise.
 * The exec_* fields are filled only by ak_plan_sparse_stats (they depend on tiles and threads):
 * exec_pairs = (row, key) products the executor computes over all query heads (tiles include masked
 * elements), useful_flops = 2 * (d + dv) * active pairs over all query heads and sequences,
 * balance = the busiest thread's work / the mean (1 = perfect), estimated from the work items' costs
 * with longest-first assignment.
 */
typedef struct ak_sparse_stats {
    double pairs, dense_pairs, causal_pairs, density;
    int64_t n_lists, n_spans, n_cols, n_bands, n_na, n_rows_gathered;
    double exec_pairs, useful_flops, waste, balance;   /* waste = exec_pairs / active pairs (>= 1) */
    int64_t n_items;
} ak_sparse_stats;

AK_API ak_status ak_sparse_get_stats(const ak_sparse *sp, ak_sparse_stats *st);
/** Name given at creation ("" if none). */
AK_API const char *ak_sparse_name(const ak_sparse *sp);

/**
 * JSON form (docs/SPARSE.md): {"format": "attnkit-sparse", "version": 1, "n_batch", "n_heads", "nq",
 * "nk", "causal", "block_q", "n_qblocks", "name", "na": {...} (if any), "lists": [{"b", "h", "qb",
 * "rows": [...], "spans": [[lo, hi], ...], "cols": [...], "bands": [[dlo, dhi], ...], "na": 1}, ...]}
 * (empty lists and empty fields omitted; on load "version", "n_batch", "n_heads" default to 1 and "causal",
 * "gather" to 0, while "nq", "nk", "block_q", "n_qblocks" and "lists" are required). to_json allocates *out through the context's allocator
 * (free with ak_free); from_json validates like ak_sparse_create (AK_ERR_BAD_PLAN with the position of a
 * syntax error, or the list and entry of a semantic one).
 */
AK_API ak_status ak_sparse_to_json(ak_ctx *ctx, const ak_sparse *sp, char **out, size_t *len);
AK_API ak_status ak_sparse_from_json(ak_ctx *ctx, const char *json, size_t len, ak_sparse **out);
/** Free memory attnkit returned (ak_sparse_to_json). */
AK_API void ak_free(ak_ctx *ctx, void *p);

/**
 * Execution: a plan of the attention problem `desc` restricted to the pattern `sp` (the visible set
 * is the intersection of the pattern with every mask of desc: causal, window; softcap, ALiBi,
 * sinks and LSE apply as for ak_attention). Run with ak_attention_run. Requirements: desc not
 * ragged (pack documents with ak_sparse_document instead); sp->nq = seqlen_q, sp->nk = seqlen_k,
 * sp->n_batch in {1, B}, sp->n_heads in {1, Hkv, Hq}. The plan keeps its own copy of sp.
 * Work items: (sequence, plan list, the query heads sharing it (up to 128 / rows columns), rows); each
 * is run by one thread in a fixed key order (bitwise identical for every thread count), costliest
 * first (threads balanced by work, not by tile count).
 */
AK_API ak_status ak_plan_create_sparse(ak_ctx *ctx, const ak_attn_desc *desc, const ak_sparse *sp, ak_plan **out);
/** Statistics of a sparse plan (pattern fields plus exec_*, with the plan's tiles and thread count). */
AK_API ak_status ak_plan_sparse_stats(const ak_plan *plan, ak_sparse_stats *st);
/** Double-precision reference with the pattern's explicit element mask (ak_sparse_mask); o/lse may be AK_F64. */
AK_API ak_status ak_attention_ref_sparse(ak_ctx *ctx, const ak_attn_desc *desc, const ak_sparse *sp,
                                         const ak_attn_tensors *t);

/* ---- structured patterns (plan builders); defaults from docs/SPARSE.md ---- */

/**
 * Sliding window with sink tokens (StreamingLLM / MInference A-shape), causal: row at position p sees
 * the first n_sink keys and the keys [p - window + 1, p] (window >= 1 tokens, token-exact), or with
 * block > 0 the block-granular form: query block m (block rows) sees key blocks m - window/block + 1 .. m
 * (window a multiple of block) plus the sink keys. dilation >= 1 keeps keys p - dilation*t,
 * t = 0..window-1 (a dilated window; token-exact only). n_heads = 1.
 */
typedef struct ak_window_params {
    int32_t window;              /* tokens, >= 1 (default 512) */
    int32_t n_sink;              /* >= 0 (default 4) */
    int32_t dilation;            /* >= 1 (default 1) */
    int32_t block;               /* 0 = token-exact (default); > 0 = block granular (block_q = block) */
    int32_t block_q;             /* query rows per block of the plan (default 64) */
} ak_window_params;
AK_API void ak_window_params_init(ak_window_params *p);
AK_API ak_status ak_sparse_window(ak_ctx *ctx, int32_t nq, int32_t nk, const ak_window_params *p, ak_sparse **out);

/**
 * Strided pattern (Sparse Transformer, Child et al. 2019), causal: a local window of `local` tokens
 * plus every key at a distance that is a multiple of `stride` ("slash" lines), plus n_sink sink keys.
 */
typedef struct ak_strided_params {
    int32_t local;               /* >= 1 (default 256) */
    int32_t stride;              /* >= 1 (default 256) */
    int32_t n_sink;              /* >= 0 (default 0) */
    int32_t block_q;             /* default 64 */
} ak_strided_params;
AK_API void ak_strided_params_init(ak_strided_params *p);
AK_API ak_status ak_sparse_strided(ak_ctx *ctx, int32_t nq, int32_t nk, const ak_strided_params *p, ak_sparse **out);

/**
 * Neighborhood Attention 1-D/2-D/3-D (NATTEN, GNA): self-attention over a token grid (geometry and
 * exact border rules: ak_sparse_na). Queries are grouped into tiles of q_tile[axis] in-group
 * coordinates per dilation group (default 8 x 8 in 2-D, 64 in 1-D, 4 x 4 x 4 in 3-D). n_heads = 1.
 * Errors: kernel > extent, kernel * dilation > extent, stride 0 or > kernel, dilation 0 ->
 * AK_ERR_INVALID_ARGUMENT.
 */
typedef struct ak_na_params {
    ak_sparse_na geom;           /* ndim, extent, kernel; dilation/stride default 1, causal 0 */
    int32_t q_tile[3];           /* 0 = default */
} ak_na_params;
AK_API void ak_na_params_init(ak_na_params *p);
AK_API ak_status ak_sparse_neighborhood(ak_ctx *ctx, const ak_na_params *p, ak_sparse **out);

/**
 * PowerAttention (Chen et al. 2025), causal: query block m (block tokens) sees key blocks
 * {0} U {m-window+1 .. m} U {m - 2^e : 2^e >= window}; the diagonal block is causal.
 * Defaults: block 256, window 5 (blocks, counting the own block). n_heads = 1.
 */
typedef struct ak_power_params {
    int32_t block, window;
} ak_power_params;
AK_API void ak_power_params_init(ak_power_params *p);
AK_API ak_status ak_sparse_power(ak_ctx *ctx, int32_t nq, int32_t nk, const ak_power_params *p, ak_sparse **out);

/**
 * S2-Attention / DKernel (Lin et al. 2024), per KV head h (n_heads = num_heads_kv), block size bs:
 *   vertical_h(k) = h >= Hkv - num_dense_heads || (k + h*step + offset) % vert_stride == 0
 *   absolute (causal): block m sees k <= m with vertical_h(k) or m - k < local_blocks
 *   relative: L = max(0, m-k-local+1), R = max(0, k-m-local_right+1), keep (L+R) % vert_stride == 0
 * step: the reference computes max(1, vert_stride / num_heads_q) and applies it to KV heads, which
 * leaves residues uncovered for some shapes (spec 4.3); fix_coverage = 1 (default) uses
 * max(1, vert_stride / n_sparse_kv_heads) so the sparse heads' union covers every block whenever
 * n_sparse_kv_heads >= vert_stride; 0 reproduces the reference. homo_head: every head uses h = 0.
 * Defaults (Phi-3-small): block 64, local_blocks 16, vert_stride 8, absolute, causal.
 */
typedef struct ak_s2_params {
    int32_t num_heads_q, num_heads_kv;
    int32_t block, local_blocks, vert_stride;
    int32_t homo_head, num_dense_heads, head_sliding_offset;
    int32_t relative;            /* 0 = absolute (default) */
    int32_t local_right;         /* relative, non-causal only: right local blocks (default 0) */
    int32_t causal;              /* default 1 */
    int32_t fix_coverage;        /* default 1 */
} ak_s2_params;
AK_API void ak_s2_params_init(ak_s2_params *p);
AK_API ak_status ak_sparse_s2(ak_ctx *ctx, int32_t nq, int32_t nk, const ak_s2_params *p, ak_sparse **out);
/** 1 iff the union of the heads' blocks covers every (query block, earlier key block) pair. */
AK_API ak_status ak_s2_coverage(ak_ctx *ctx, const ak_s2_params *p, int32_t n_blocks, int32_t *covered);

/**
 * MoA (Fu et al. 2024): per head h a sink of 64 tokens plus a causal band, span S_h = alpha_h +
 * beta_h * N_plan (N_plan = nk + max_new_tokens), S_h = min(S_h, N_plan), S_h = 64 * ceil(max(S_h, 128) / 64),
 * sink = min(S_h, 64), band = S_h - sink; prefill is block granular (64): query block m sees key blocks
 * [0, sink/64) and [m + 1 - band/64, m]. n_heads = the number of alphas (one per KV head, or per head).
 */
typedef struct ak_moa_params {
    int32_t n_heads;
    const float *alpha, *beta;   /* [n_heads] */
    int32_t max_new_tokens;      /* default 1024 */
    int32_t token_exact;         /* 1 = exact token band instead of the reference's block-granular one */
} ak_moa_params;
AK_API void ak_moa_params_init(ak_moa_params *p);
AK_API ak_status ak_sparse_moa(ak_ctx *ctx, int32_t nq, int32_t nk, const ak_moa_params *p, ak_sparse **out);
/** Read layer `layer` of a MoA plan file ({"alphas": [L][H], "betas": [L][H]}): *n_heads and up to
 *  max_heads alphas/betas. AK_ERR_BAD_PLAN on malformed JSON or an absent layer. */
AK_API ak_status ak_moa_load(ak_ctx *ctx, const char *json, size_t len, int32_t layer, int32_t max_heads,
                             float *alpha, float *beta, int32_t *n_heads);

/**
 * SF-Attn (SinkLoRA), causal, per query head (n_heads = num_heads_q): groups of `group` tokens
 * (nk % group == 0, group even); heads in the shift set [shift_lo, shift_hi) use groups offset by
 * group/2 without wrap-around ([0, G/2), [G/2, 3G/2), ..., [N - G/2, N)); every row also sees the
 * first n_sink keys (sink rows causal). Defaults: shift set [Hq/2, Hq), 4 sinks.
 */
typedef struct ak_sfattn_params {
    int32_t num_heads_q, group, n_sink;
    int32_t shift_lo, shift_hi;  /* -1 = default */
} ak_sfattn_params;
AK_API void ak_sfattn_params_init(ak_sfattn_params *p);
AK_API ak_status ak_sparse_sfattn(ak_ctx *ctx, int32_t nq, int32_t nk, const ak_sfattn_params *p, ak_sparse **out);

/**
 * Block-diagonal / document mask for packed sequences: doc_off (int32 [n_docs+1], 0 = first,
 * non-decreasing, last = nq = nk) cuts the tokens into documents; a row sees keys of its own document
 * only (and with causal, only earlier ones). n_heads = 1.
 */
AK_API ak_status ak_sparse_document(ak_ctx *ctx, int32_t n, const int32_t *doc_off, int32_t n_docs, int32_t causal,
                                    int32_t block_q, ak_sparse **out);

/**
 * A user block mask: mask[(h * n_qb + m) * n_kb + k] != 0 lets query block m (block_q rows) see key
 * block k (block_k keys) for plan head h; n_qb = ceil(nq / block_q), n_kb = ceil(nk / block_k).
 * causal adds the token-level causal mask.
 */
AK_API ak_status ak_sparse_block_mask(ak_ctx *ctx, int32_t nq, int32_t nk, int32_t n_heads, int32_t block_q,
                                      int32_t block_k, const uint8_t *mask, int32_t causal, ak_sparse **out);

/* ------------------------------------------------------------------------------------------------
 * Content-aware (dynamic) sparse attention: estimate from Q/K(/V) -> sparse plan (docs/DYNAMIC.md)
 * ---------------------------------------------------------------------------------------------- */

/**
 * Every method is a planner with one signature:
 *   ak_status ak_<method>_plan(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
 *                              const ak_<method>_params *params, ak_sparse **out, ak_dyn_info *info);
 * desc is the attention problem the plan will run with (ak_plan_create_sparse(ctx, desc, *out, ...)):
 * not ragged; t->q and t->k (t->v for methods that read values) are read, checked against desc like
 * ak_attention_run checks them; t->o / t->lse are ignored. params NULL = the method's defaults
 * (ak_<method>_params_init). The estimation runs in f32 on the context's threads and ISA and is
 * deterministic (the same plan for every thread count). The plan is causal when the method is.
 * info (may be NULL) receives the estimation time and a text of the per-head decisions.
 * Bad parameters -> AK_ERR_INVALID_ARGUMENT naming the field; a problem the method does not define
 * (e.g. a non-causal desc for a causal-only method) -> AK_ERR_INVALID_ARGUMENT saying why.
 */
typedef struct ak_dyn_info {
    size_t size;                 /* set by the planner: sizeof(ak_dyn_info) */
    double est_seconds;          /* wall time of estimation + plan construction */
    double density;              /* active pairs / causal pairs (or dense pairs when not causal); exact, which may
                                    cost a pass over every row after est_seconds is taken: pass info = NULL
                                    where only the plan matters */
    int32_t n_dense_heads;       /* heads (or groups) the method ran dense (short input, fallbacks) */
    char explain[4096];          /* method-specific decisions, one line per head (truncated) */
} ak_dyn_info;

/**
 * By name, for tools and sweeps: spec = "<method>" or "<method>:key=value,key=value" with the keys of
 * the method's params struct (docs/DYNAMIC.md lists them), e.g. "flexprefill:gamma=0.9,tau=0.1".
 * Methods: flexprefill, minference, mminference, anchor, dhsa, routing, dma. Unknown method or key ->
 * AK_ERR_INVALID_ARGUMENT.
 */
AK_API ak_status ak_dyn_plan_named(ak_ctx *ctx, const char *spec, const ak_attn_desc *desc,
                                   const ak_attn_tensors *t, ak_sparse **out, ak_dyn_info *info);

/* ---- FlexPrefill (begin) ---- */
/**
 * FlexPrefill (Lai et al., ICLR 2025; docs/dynamic/flexprefill.md). Causal prefill only: desc->causal = 1 and
 * seqlen_q == seqlen_k = N (else AK_ERR_INVALID_ARGUMENT); no window, softcap, ALiBi, sinks or seqused_k. Reads
 * t->q and t->k. Plan: n_batch = B, n_heads = Hq (one block set per query head), causal, block_q = block,
 * spans = whole key blocks [c*bs, min((c+1)*bs, N)) (adjacent ones merged); the executor applies the
 * token-level causal mask inside the diagonal block.
 *
 * Rule, per (sequence b, query head h); bs = block, nb = ceil(N / bs), KV head h / G (h % Hkv when
 * gqa_interleave), minb = max(1, ceil(min_budget / bs)), maxb = max_budget ? min(ceil(max_budget / bs), nb) : nb,
 * scale = the descriptor's softmax scale:
 *  0. N <= max(2*bs, minb*bs): dense (query block r sees key blocks 0..r), kind AK_FLEXPREFILL_DENSE.
 *  1. A[r][j] = softmax_j(scale * q_{N-bs+r} . k_j) over j <= N-bs+r, r < bs (the last bs rows).
 *  2. vert[j] = mean_r A[r][j]; slash[t] = mean_r A[r][N-bs+r - (N-1-t)] (t = N-1 is the main diagonal);
 *     vblk[c] = sum of vert over key block c; sblk[c] = sum of slash[t] for t in [c*bs, (c+1)*bs)
 *     (so sblk[nb-1] holds the smallest offsets). See ak_flexprefill_distributions.
 *  3. est[c] = softmax_c(qbar . kbar_c) over all nb blocks, qbar = mean over the bs rows of scale*q,
 *     kbar_c = mean of the keys of block c (a short last block over its real keys); D = ak_flexprefill_js(est, vblk).
 *     D < tau: query-aware head; otherwise vertical-slash head.
 *  4. Budgets. mode REF: cnt_v = 1 + #{k >= 1 : sum of the k largest vert <= gamma} (cnt_v = N when gamma = 1),
 *     nvb = cnt_v / 128 + 1 (integer division by 128 whatever bs, as the reference), clamped to [minb, maxb];
 *     nsb likewise from slash; query-aware heads: nvb = nsb = minb.
 *     mode PAPER: nvb = the fewest blocks, block 0 first and then the largest vblk, whose vblk mass is >= gamma
 *     (nb when never reached or gamma = 1), clamped to [minb, maxb]; nsb likewise (the diagonal bin first);
 *     query-aware heads: nvb = nsb = 1 (block 0 and the diagonal only).
 *  5. Vertical set V = the nvb best blocks of vblk with block 0 ranked first; slash set S = the offsets
 *     o = nb-1-c of the nsb best bins c of sblk with c = nb-1 ranked first (ties: the lower index).
 *     Query block r sees key blocks {v in V : v <= r} U {r - o : o in S, o <= r}.
 *  6. Query-aware heads add: qbar_r = mean of the query rows of block r; Ab[r][c] = softmax_{c <= r}(scale *
 *     qbar_r . kbar_c); all entries c <= r ordered by value (descending, ties by r*nb + c ascending); REF keeps the
 *     longest prefix whose running sum is <= gamma*nb (the entry crossing it is dropped), PAPER the shortest
 *     prefix whose running sum is >= gamma*nb (the crossing entry kept); gamma = 1 keeps all. Kept (r, c) are added.
 * Block 0 and the diagonal block are always present: no row is empty. Estimation in f32 products with double
 * sums, on the context's threads; deterministic for every thread count.
 */
typedef enum ak_flexprefill_mode {
    AK_FLEXPREFILL_REF = 0,          /* the reference code's rules (default) */
    AK_FLEXPREFILL_PAPER = 1         /* the paper's coverage contract */
} ak_flexprefill_mode;

typedef enum ak_flexprefill_kind {
    AK_FLEXPREFILL_DENSE = 0,        /* short input: dense causal */
    AK_FLEXPREFILL_VERTICAL_SLASH = 1,
    AK_FLEXPREFILL_QUERY_AWARE = 2
} ak_flexprefill_kind;

/** The decision of one (sequence, query head), written to params->heads[b * Hq + h] on success when heads is
 *  not NULL. */
typedef struct ak_flexprefill_head {
    int32_t kind;                /* ak_flexprefill_kind */
    double js;                   /* D of step 3 (NaN for dense heads) */
    int32_t cnt_v, cnt_s;        /* coverage counts before the clamps: tokens (REF, the "+1" included) or
                                    blocks (PAPER); 0 for dense heads */
    int32_t nvb, nsb;            /* vertical / slash blocks selected (block 0 and the diagonal included) */
    double v_mass, s_mass;       /* vblk / sblk mass of the selected vertical / slash blocks */
    int64_t n_qa;                /* query-aware entries kept (0 for other kinds) */
    double qa_mass;              /* their sum of Ab (<= nb) */
    int64_t n_blocks;            /* active (query block, key block) pairs of the head in the plan */
} ak_flexprefill_head;

typedef struct ak_flexprefill_params {
    int32_t block;               /* bs, tokens, in [8, 2048] (default 128) */
    float gamma;                 /* coverage target, in (0, 1] (default 0.9) */
    float tau;                   /* JS-distance threshold, >= 0 (default 0.1; 0 = never query-aware) */
    int32_t min_budget;          /* tokens, >= 0 (default 0 = one block) */
    int32_t max_budget;          /* tokens, >= 0 (default 0 = no cap); if set, ceil(max_budget/bs) >= minb */
    int32_t gqa_interleave;      /* 0 (default): query head h estimates with KV head h / G; 1: h % Hkv (the
                                    reference's interleaved mode; the executor still reads h / G) */
    int32_t mode;                /* ak_flexprefill_mode (default AK_FLEXPREFILL_REF) */
    ak_flexprefill_head *heads;  /* optional output, [B * Hq] (default NULL) */
} ak_flexprefill_params;

AK_API void ak_flexprefill_params_init(ak_flexprefill_params *p);
/** The planner (common signature above); spec string keys: block, gamma, tau, min_budget, max_budget,
 *  gqa_interleave, mode (ref | paper | 0 | 1). nb = ceil(N / block) must be <= 16384. */
AK_API ak_status ak_flexprefill_plan(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                     const ak_flexprefill_params *params, ak_sparse **out, ak_dyn_info *info);
/**
 * Steps 1-2 for one (sequence b, query head h), for inspection and tests: vert[N] and slash[N] as above over the
 * last L = min(block, N) rows (mean over L), each summing to 1 (N >= 1; desc/t/params checked as by the planner,
 * the dense rule of step 0 is not applied). b in [0, B), h in [0, Hq).
 */
AK_API ak_status ak_flexprefill_distributions(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                              const ak_flexprefill_params *params, int32_t b, int32_t h,
                                              double *vert, double *slash);
/**
 * The square root of the Jensen-Shannon divergence of two distributions p, q [n] (natural log, 0 log 0 = 0):
 * sqrt(KL(p||m)/2 + KL(q||m)/2), m = (p+q)/2; in [0, sqrt(ln 2)] for distributions. NaN if p or q is NULL or n < 1.
 */
AK_API double ak_flexprefill_js(const double *p, const double *q, int64_t n);
/* ---- FlexPrefill (end) ---- */

/* ---- MInference (begin) ---- */
/**
 * MInference 1.0 (Jiang et al., NeurIPS 2024; docs/dynamic/minference.md): causal prefill, one pattern per
 * query head, usually read from MInference's per-model JSON config (ak_minference_load_config).
 * Plan: causal, n_batch = B, n_heads = Hq (each query head estimated on its own, GQA reads KV head h / G),
 * query blocks of `block` rows from row 0; any nq, nk (row i at pos(i) = i + nk - nq; rows at negative
 * positions see nothing). desc must be causal, without window / softcap / ALiBi / sinks / seqused_k
 * (AK_ERR_INVALID_ARGUMENT). nq = 1 (decode) and layers below starting_layer run dense.
 * Head kinds and their (v, s):
 *   AK_MINF_DENSE   dense causal.
 *   AK_MINF_VS      vertical-slash, v verticals and s slashes (after ratio and the clamps
 *                   v = min(nk, max(v, min_v)), s = min(nk, max(s, min_s))). Estimate: the last
 *                   L = min(last_q, nq) query rows' causal softmax P (f32); vs[j] = sum of column j,
 *                   ss[delta] = sum of the diagonal at offset delta = pos(row) - j (0 .. nk-1); keys
 *                   0..forced_v-1 and offsets 0..forced_s-1 are forced (+inf); V = top-v of vs, S = top-s of
 *                   ss (ties -> lower index); offset 0 is always added to S.
 *                   exact = 1 ([paper], default): row i sees {j in V : j <= pos(i)} u {pos(i) - delta : delta in S}
 *                   (cols + bands, consecutive offsets merged).
 *                   exact = 0 ([ref] convert_vertical_slash_indexes): block with first position p0, E = p0 + block;
 *                   offsets delta < E, largest first, give key ranges ending at e = max(E - delta, block), each
 *                   [e - block, e): an end beyond the current range's end + block starts a new range, an end
 *                   beyond the current end extends it by block; spans = the ranges (cut at nk), cols = V below
 *                   the last range's end. A superset of the exact set (whole block-wide ranges per slash).
 *   AK_MINF_ASHAPE  A-shape / StreamingLLM: v = n_init, s = n_local (>= 1): row i sees j < n_init or
 *                   0 <= pos(i) - j < n_local (span [0, n_init) + band [0, n_local - 1]).
 *   AK_MINF_BLOCK   block-sparse, v = top-k key blocks per query block (>= 1): block means of Q rows and K
 *                   rows (over the real rows; block_dilute = 1: over `block` rows counting the reference's zero
 *                   padding), score qp[r] . kp[c] unscaled, candidates = key blocks c with c * block <= the
 *                   query block's last position, top min(v, #candidates) (ties -> lower c), token-causal.
 *   AK_MINF_TRI     Tri-shape: A-shape (v, s) for rows < nq - n_last, dense for the last n_last rows (rows
 *                   gathered into an extra block when that boundary is not a multiple of block).
 * ratio (minference_ratio) multiplies v and s of VS, A-shape and Tri heads (floor) before the clamps.
 */
typedef enum ak_minf_kind {
    AK_MINF_DENSE = 0,
    AK_MINF_VS = 1,
    AK_MINF_ASHAPE = 2,
    AK_MINF_BLOCK = 3,
    AK_MINF_TRI = 4
} ak_minf_kind;

/** One head's pattern: kind (ak_minf_kind) and its sizes (meaning per kind above). */
typedef struct ak_minf_head {
    int32_t kind;
    int32_t v, s;
} ak_minf_head;

typedef struct ak_minference_params {
    const ak_minf_head *heads;   /* [n_heads] one per query head, or NULL: default_head for every head */
    int32_t n_heads;             /* = num_heads_q when heads is given */
    ak_minf_head default_head;   /* {AK_MINF_VS, 1000, 6096} (the reference's default for an unlisted head) */
    int32_t exact;               /* VS lowering: 1 = [paper] cols + bands (default), 0 = [ref] block-wide ranges */
    int32_t last_q;              /* estimation rows, >= 1 (default 64) */
    int32_t block;               /* query block rows, [ref] range width, block-sparse block, >= 1 (default 64) */
    int32_t forced_v, forced_s;  /* forced verticals 0..forced_v-1, offsets 0..forced_s-1, >= 0 (30, 100) */
    int32_t min_v, min_s;        /* VS clamps, >= 0 (30, 50) */
    float ratio;                 /* > 0, finite (default 1) */
    int32_t layer;               /* the layer this plan is for, >= 0 (default 0) */
    int32_t starting_layer;      /* layer < starting_layer -> every head dense, >= 0 (default 0) */
    int32_t block_dilute;        /* 0 = [paper] means over real rows (default), 1 = [ref] zero-padding means */
    int32_t n_last;              /* Tri-shape dense rows, >= 0 (default 100) */
} ak_minference_params;

AK_API void ak_minference_params_init(ak_minference_params *p);
/** The planner (common signature above). Errors: bad params -> AK_ERR_INVALID_ARGUMENT naming the field. */
AK_API ak_status ak_minference_plan(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                    const ak_minference_params *params, ak_sparse **out, ak_dyn_info *info);
/**
 * Read layer `layer` of an MInference config: a JSON list over layers of objects
 * {"<head id>": [type, vertical_size, slash_size, score], ...} (score optional, ignored), type one of
 * "vertical_and_slash" -> {AK_MINF_VS, v, s}, "stream_llm" -> {AK_MINF_ASHAPE, n_init = v, n_local = s},
 * "block_sparse" -> {AK_MINF_BLOCK, 100, 0} (the reference ignores the sizes and takes the top 100 blocks).
 * heads[n_heads] (n_heads = num_heads_q) is written only on success; heads the layer does not list, and every
 * head when the file has no such layer, get {AK_MINF_VS, 1000, 6096} (the reference's behaviour);
 * *n_found (may be NULL) = the heads the layer listed. Every layer is checked: root not a list, a layer not an
 * object, a key that is not a decimal head id < n_heads, a head twice, an entry that is not [string, int, int
 * (, number)], an unknown type, sizes not integers in [0, 2^31) -> AK_ERR_BAD_PLAN (with the layer and head);
 * JSON syntax errors -> AK_ERR_BAD_PLAN with the byte offset; n_heads < 1, layer < 0 -> AK_ERR_INVALID_ARGUMENT.
 */
AK_API ak_status ak_minference_load_config(ak_ctx *ctx, const char *json, size_t len, int32_t layer, int32_t n_heads,
                                           ak_minf_head *heads, int32_t *n_found);
/**
 * Offline pattern search ("kernel-aware" search of the reference): on a calibration sample (desc, t as for
 * the planner), every candidate pattern is planned for every head with `params` (its heads / default_head,
 * layer and starting_layer are ignored), and each query head gets the candidate whose plan keeps the largest
 * mean dense attention mass (recall) over the rows i >= min(row_start, nq - 1) of every sequence (ties -> the
 * earlier candidate). best[Hq] receives the winners, recall[Hq] (may be NULL) their mean recall.
 * Candidates: cands[n_cands], or NULL = the reference's list: A-shape (100, 800); VS (30, 800), (100, 750),
 * (500, 700), (3500, 100); block-sparse top max(1, nb / 8) of the `block`-blocks (the reference scores 32-blocks).
 * ref_post = 1 applies the reference's post-processing: an A-shape winner is stored as VS with its sizes, a
 * block-sparse winner as VS (1000, 6096). Cost: the dense probabilities of the rows >= row_start (f32 products)
 * and one row mask per candidate and row. Errors: as the planner, plus row_start < 0, ref_post not 0/1,
 * n_cands < 1, a bad candidate (-> AK_ERR_INVALID_ARGUMENT naming the field); best is written only on success.
 */
typedef struct ak_minference_search_params {
    const ak_minf_head *cands;   /* NULL = the reference's candidates */
    int32_t n_cands;
    int32_t row_start;           /* >= 0 (default 2500) */
    int32_t ref_post;            /* 0 (default) or 1 */
} ak_minference_search_params;
AK_API void ak_minference_search_params_init(ak_minference_search_params *s);
AK_API ak_status ak_minference_search(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                      const ak_minference_params *params, const ak_minference_search_params *search,
                                      ak_minf_head *best, float *recall);
/* ---- MInference (end) ---- */

/* ---- MMInference (begin) ---- */
/**
 * MMInference (Li et al., ICML 2025; docs/dynamic/mminference.md): causal prefill of mixed-modality
 * (video/image + text) inputs. No public code exists: the choices marked [inferred] are attnkit's, each
 * behind a field below, recorded in the plan name and in ak_dyn_info.explain.
 * Plan: causal, n_batch = B, n_heads = Hq (each query head estimated on its own; GQA reads KV head h / G),
 * always gather lists (ak_sparse_builder_add_row); any nq, nk (row i at pos(i) = i + nk - nq; rows at
 * negative positions are in no list: O = 0, LSE = -inf). desc must be causal, without window / softcap /
 * ALiBi / sinks / seqused_k (AK_ERR_INVALID_ARGUMENT). nq = 1 (decode): every head dense.
 *
 * Modalities: modality[p] (int32 [nk], shared by every sequence of the batch) is the modality of position p
 * (0 = text, 1 = vision, ...; NULL = every position 0); query row i has modality m(i) = modality[pos(i)].
 * Groups of query rows (each with its own estimation and inner pattern):
 *   AK_MMI_NO_BOUNDARY, AK_MMI_K_BOUNDARY  one group: every row; one part (all keys), pattern[0], budgets [0].
 *   AK_MMI_Q_BOUNDARY   one group per query modality a present: its rows; one part (all keys), pattern[a].
 *   AK_MMI_2D_BOUNDARY  one group per query modality a; one part per key modality b having a key <= the
 *                       group's last position: keys K_b = {j : modality[j] = b}, pattern
 *                       pair_pattern[a * n_modalities + b] (-1 or NULL: pattern[a]); budgets of a.
 * A group's estimation rows E = its last min(last_q, |group|) rows (by position), P[r][j] = their causal
 * softmax over all keys (f32 products, as ak_attention sees them); plast = the position of its last row.
 * Inner patterns of a part (a, keys K; K = all keys outside 2D):
 *   AK_MMI_VS      vs[j] = sum_r P[r][j] for j in K, j <= plast; ss[delta] = sum_r P[r][p_r - delta] over
 *                  p_r - delta in K, delta in [0, plast]; keys j < forced_v and offsets delta < forced_s are
 *                  forced (+inf); V = top-min(vertical_size[a], #candidate keys) of vs, S = top-min(
 *                  slash_size[a], plast + 1) of ss (ties -> lower index); offset 0 always in S. Row i sees
 *                  {j in V : j <= pos(i)} u {pos(i) - delta : delta in S} (exact: cols + bands).
 *   AK_MMI_ASHAPE  row i sees j in K with j < n_sink, and j with 0 <= pos(i) - j < n_local.
 *   AK_MMI_GRID    stride s and phase p (fixed, or searched below); row i sees j in K with j % s == p
 *                  (vertical lines), j in K with j < n_sink, j with 0 <= pos(i) - j < n_local, and with
 *                  grid_rows = 1, every j in K when pos(i) % s == p (horizontal lines: "grid rows", lowered
 *                  as their own gather lists). s = 1 is dense.
 * Bands (slashes, local windows) are diagonals in original positions and are not restricted to K in 2D
 * (the plan has no per-key-modality predicate) [inferred]. Row i sees the union over its group's parts,
 * intersected with causal (original positions: the permutation into gather lists is exact).
 * Stride search [inferred], per grid part, when stride = 0:
 *   column profile  x_v[j] = sum_r P[r][j] * [j <= p_r - n_local] on U_v = {j in K : n_sink <= j <= plast - n_local}
 *                   (the last rows' mass outside sink and local window);
 *   row profile     (row_probe > 0) np = min(row_probe, |U_v|) probes evenly spaced in U_v (U_v[floor((t + 0.5)
 *                   |U_v| / np)], t < np); for each row i of the group with a visible probe
 *                   (probe <= pos(i) - n_local): far = n_far(i) * mean over its visible probes of e^{s_ij},
 *                   n_far(i) = |{j in K : n_sink <= j <= pos(i) - n_local}|; loc = sum of e^{s_ij} over
 *                   pos(i) - row_ref < j <= pos(i); x_h[pos(i)] = far / (far + loc) (U_h = those positions);
 *   score           for each candidate s <= nk (the strides list, else stride_min..stride_max) and each profile x
 *                   over its positions U: T = sum x, c = min(x, T * s / |U|) (grid_cap = 1; c = x when 0),
 *                   ex(p) = sum_{u in U, u % s = p} c_u / sum c - |{u in U : u % s = p}| / |U| (0 if sum c = 0);
 *                   score(s, p) = ex_v(p) + row_weight * ex_h(p), over the p whose residue class holds at least
 *                   grid_min_lines positions of each non-empty profile. Best: highest score, ties -> smaller
 *                   s, then smaller p. No candidate, or best < grid_min_score -> the part runs VS (budgets of a).
 * Lowering: rows of a group that are grid rows of the same parts form a class; a class's rows, in position
 * order, are cut into gather lists of `block` rows; each list holds the union of its parts' cols (runs of 4
 * or more consecutive cols as one span), sink spans, bands, and for its grid parts the spans of K; entries
 * beyond the list's last position are left out (causal would hide them).
 * Explain: the plan name (every setting), a line naming the [inferred] choices, then one line per (b, h):
 * "b<b> h<h> <boundary> <part>:<pattern>(...) ...", part = "all" or "m<a>"
 * ("m<a>><b>" in 2D), e.g. "m1:grid(s=16,p=3,score=0.91234,ex_v=0.900,ex_h=0.012,rows=64)", a fallback as
 * "grid->vs(score=...)vs(v=..,s=..)" or "grid->vs(no candidate)vs(...)".
 * By name (ak_dyn_plan_named): "mminference:key=value,..." with the field names; boundary = none|k|q|2d,
 * pattern = vs|ashape|grid; "pattern=grid" sets every modality, "pattern1=grid" modality 1 (likewise
 * vertical_size, slash_size); modality, pair_pattern and strides are C only.
 */
#define AK_MMI_MAX_MODALITIES 8

typedef enum ak_mmi_boundary {
    AK_MMI_NO_BOUNDARY = 0,
    AK_MMI_K_BOUNDARY = 1,
    AK_MMI_Q_BOUNDARY = 2,
    AK_MMI_2D_BOUNDARY = 3
} ak_mmi_boundary;

typedef enum ak_mmi_pattern {
    AK_MMI_VS = 0,
    AK_MMI_ASHAPE = 1,
    AK_MMI_GRID = 2
} ak_mmi_pattern;

typedef struct ak_mminference_params {
    const int32_t *modality;     /* [nk] ids in [0, n_modalities), or NULL = text only (default NULL) */
    int32_t n_modalities;        /* 1 .. AK_MMI_MAX_MODALITIES (default 1) */
    int32_t boundary;            /* ak_mmi_boundary (default AK_MMI_NO_BOUNDARY) */
    int32_t pattern[AK_MMI_MAX_MODALITIES];       /* ak_mmi_pattern per query modality (VS for 0, GRID for 1..) */
    const int32_t *pair_pattern; /* 2D: [n_modalities][n_modalities] (query, key), -1 = pattern[query]; or NULL */
    int32_t vertical_size[AK_MMI_MAX_MODALITIES]; /* VS verticals per query modality, >= 1 (default 1000) */
    int32_t slash_size[AK_MMI_MAX_MODALITIES];    /* VS slashes per query modality, >= 1 (default 6096) */
    int32_t forced_v, forced_s;  /* VS forced keys 0..forced_v-1, offsets 0..forced_s-1, >= 0 (default 30, 100) */
    int32_t n_sink;              /* A-shape / grid sink keys, >= 0 (default 64) [inferred for grid] */
    int32_t n_local;             /* A-shape / grid local window, >= 1 (default 512) [inferred for grid] */
    int32_t stride, phase;       /* grid: stride >= 1 with phase in [0, stride) fixes them; 0, 0 = search (default) */
    int32_t stride_min, stride_max; /* search range, 1 <= min <= max (default 2, 1024) [inferred] */
    const int32_t *strides;      /* explicit candidates (each >= 1) instead of the range, or NULL (default) */
    int32_t n_strides;           /* entries of strides, >= 1 when strides is given */
    int32_t grid_rows;           /* 0/1: horizontal lines (grid rows attend all causal keys) (default 1) [inferred] */
    int32_t grid_cap;            /* 0/1: cap profile entries at the perfect-grid line mass (default 1) [inferred] */
    float grid_min_score;        /* finite: below it the part falls back to VS (default 0.25) [inferred] */
    int32_t grid_min_lines;      /* >= 1: positions a residue class needs (default 4) [inferred] */
    int32_t row_probe;           /* row-profile probes, >= 0; 0 = column profile only (default 32) [inferred] */
    int32_t row_ref;             /* row-profile local reference keys, >= 1 (default 16) [inferred] */
    float row_weight;            /* >= 0, finite: weight of the row profile in the score (default 1) [inferred] */
    int32_t last_q;              /* estimation rows per group, >= 1 (default 64) */
    int32_t block;               /* rows per gather list, >= 1 (default 64) */
} ak_mminference_params;

AK_API void ak_mminference_params_init(ak_mminference_params *p);
/**
 * The planner (common signature above). Errors: bad params -> AK_ERR_INVALID_ARGUMENT naming the field
 * (a modality id outside [0, n_modalities) names the token: "modality[17] = 3 ..."; strides NULL with
 * n_strides != 0, or given with n_strides < 1, likewise).
 */
AK_API ak_status ak_mminference_plan(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                     const ak_mminference_params *params, ak_sparse **out, ak_dyn_info *info);
/* ---- MMInference (end) ---- */

/* ---- AnchorAttention (begin) ---- */
/**
 * AnchorAttention (Zhang et al. 2025; docs/dynamic/anchor.md), causal prefill, one plan list per query
 * head and block (plan n_heads = Hq, block_q = bs; = S with superblock_lists). Query rows are cut into
 * blocks of bs rows and superblocks of
 * S = step * bs rows, both aligned at row 0. With nq == nk = N, the n_sb = floor(N / S) full
 * superblocks hold the rows i < n_sb * S; for such a row (superblock m = i / S, block qb = i / bs):
 *   anchor region A(i), causal (keys j <= i):
 *     region 0 (reference v4 kernels, default):  [0, S)  U [m*S, i]    first superblock + own superblock
 *     region 1 (paper / PyTorch reference):       [0, bs) U [qb*bs, i]  first block + own block
 *   anchor xa(i) = max over j in A(i) of scale * q_i . k_j   (scale = desc scale)
 *   per block B of the superblock: a_B = mean over its rows of xa(i), qbar_B = mean of its rows q_i
 *   init_end = S (region 0) or bs (region 1); the candidates of superblock m are the keys
 *   [init_end, m*S) (none for m*S <= init_end); a candidate j is a stripe of superblock m iff
 *       scale * qbar_B . k_j >= a_B - theta   for at least one of the step blocks B of superblock m
 *   Row i then sees  [0, init_end) U [m*S, i] U stripes(m)  (set semantics: each pair once).
 * The rows of the tail (i >= n_sb * S: N % S rows), every row when N < S, and every row when
 * nq != nk (decode / chunked prefill, which the method does not define) see every causal key (dense).
 * theta = +inf makes every candidate a stripe (dense causal attention), theta = -inf none (init + local
 * only); neither estimates anything. Estimation in f32 (the context's micro-kernel), about
 * N*(S + S/2)*d (anchors, region 0) + (N/bs)*(N/2)*d (stripes) multiply-adds per query head.
 * Errors: desc.causal = 0, a window / softcap / ALiBi / sinks / seqused_k in desc, bs < 1, step < 1,
 * bs * step > INT32_MAX, theta NaN, region or superblock_lists not 0/1 -> AK_ERR_INVALID_ARGUMENT
 * naming the field; *out is NULL on every failure.
 */
typedef struct ak_anchor_params {
    int32_t bs;                  /* rows per block (pooling unit), >= 1 (default 128) */
    int32_t step;                /* blocks per superblock (stripe set shared by step blocks), >= 1 (default 16) */
    float theta;                 /* margin below the anchor, natural-log units of scaled logits; any value but
                                    NaN (default 12) */
    int32_t region;              /* anchor region: 0 = v4 (default), 1 = paper (see above) */
    int32_t superblock_lists;    /* 0 = one plan list per bs-row block (default); 1 = one list per superblock
                                    (block_q = S): the same pairs with step times fewer stored cols */
} ak_anchor_params;
/** Defaults: bs 128, step 16, theta 12, region 0, superblock_lists 0 (NULL-safe). */
AK_API void ak_anchor_params_init(ak_anchor_params *p);
/** The planner (common contract above); spec string "anchor:bs=128,step=16,theta=12,region=0". */
AK_API ak_status ak_anchor_plan(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                const ak_anchor_params *params, ak_sparse **out, ak_dyn_info *info);
/**
 * The row anchors xa(i) of the rule above for EVERY row (also the first superblock, the tail and N < S,
 * where the plan does not use them), same f32 computation as the planner: anchor[(b * Hq + h) * N + i]
 * (f32, B * Hq * N values). Requires nq == nk (else AK_ERR_INVALID_ARGUMENT); params as for the planner.
 */
AK_API ak_status ak_anchor_row_anchors(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                       const ak_anchor_params *params, float *anchor);
/* ---- AnchorAttention (end) ---- */

/* ---- DHSA (begin) ---- */
/**
 * DHSA, Dynamic Hierarchical Sparse Attention (Xiong et al. 2025, paper v1 = the reference's legacy/
 * code; docs/dynamic/dhsa.md). Causal only (desc->causal = 1; windows, softcap, ALiBi, sinks refused).
 * Plan: n_batch = B; n_heads = 1 (one plan for every head, from head-averaged Q and K: the paper) or
 * Hkv with per_kv_head = 1 (each KV head from the mean of its G query heads and its own keys).
 *
 * Keys are cut into chunks [b_c, b_{c+1}), 0 = b_0 < b_1 < ... < b_C = nk (chunking, below). Query rows
 * [0, S), S = nq - min(instruction_tokens, nq), are cut into blocks B_m = [m*block, min((m+1)*block, S));
 * the rows [S, nq) are dense (every causal key; blocks of `block` rows). qbar_i / kbar_j are the means
 * over the plan head's query heads / KV heads of row i / key j; |B|, |C| are real lengths:
 *   score(B, C) = (sum_{i in B} qbar_i) . (sum_{j in C} kbar_j) / sqrt(|B| |C|)   (no 1/sqrt(d), no softmax)
 * and every key inherits its chunk's score (upsampling). For block B_m let e = pos(last row) + 1
 * (pos(i) = i + nk - nq; keys j < e are allowed; e <= 0: the block sees nothing), K = min(budget, nk):
 *   local  = [e - l, e), l = min(local, K, e)                      (the most recent allowed keys)
 *   global = [0, min(global_tokens, e))
 *   scored = the K - l best keys of [g, e - l), g = min(global_tokens, e - l), ordered by (score desc,
 *            index asc): whole chunks in that order, the last one cut to its lowest keys (all of the
 *            range when it holds <= K - l keys)
 *   keys(B_m) = global U local U scored   (a set: globals never take budget; budget >= nk -> dense)
 * global_overwrite = 1 reproduces the reference instead: scored = the K - l best keys of [0, e - l); if
 * global_tokens < K the global_tokens lowest keys of local U scored are dropped and the globals added,
 * else keys(B_m) = [0, min(K, e)).
 * Lowering: the block's keys as merged runs; a run holding a global or local key, or of >= span_min
 * keys, is a span, any other run is listed as cols. The causal mask applies inside every block.
 *
 * Chunking (the reference's learned boundary predictor is model-specific and not shipped):
 *   AK_DHSA_FIXED   b = every multiple of `chunk`, plus the forced boundary nk - min(instruction_tokens, nq)
 *                   when it lies in (0, nk). Predictor-free; O(1).
 *   AK_DHSA_GIVEN   boundaries[0 .. n_boundaries) from the caller (a predictor, or ak_dhsa_boundaries of an
 *                   earlier layer): strictly increasing in [0, nk]; 0 and nk are added when absent; the
 *                   same list for every sequence and head.
 *   AK_DHSA_ORACLE  the reference's training label: ratios from the head-averaged causal softmax attention
 *                   (ak_dhsa_label_ratios; the desc's scale), then ak_dhsa_select_boundaries with theta,
 *                   nms, max_chunks = (nk / block) * beta and instruction_tokens. Costs O(H nq nk d) time and
 *                   O(nk) memory per plan head: for short inputs and as a test oracle.
 */
typedef enum ak_dhsa_chunking { AK_DHSA_FIXED = 0, AK_DHSA_GIVEN = 1, AK_DHSA_ORACLE = 2 } ak_dhsa_chunking;

typedef struct ak_dhsa_params {
    int32_t block;               /* query rows per block, >= 1 (default 128) */
    int32_t budget;              /* keys per block (local + scored), >= 1 (default 2048) */
    int32_t local;               /* >= 0 (default 128) */
    int32_t global_tokens;       /* >= 0 (default 128) */
    int32_t instruction_tokens;  /* last query rows computed dense, >= 0 (default 64) */
    int32_t chunking;            /* ak_dhsa_chunking (default AK_DHSA_FIXED) */
    int32_t chunk;               /* FIXED: chunk length, >= 1 (default 16) */
    const int32_t *boundaries;   /* GIVEN: the list (may be NULL when n_boundaries = 0: one chunk) */
    int32_t n_boundaries;        /* >= 0 (default 0) */
    float theta;                 /* ORACLE: keep gaps with ratio > theta; finite, >= 0 (default 1.1) */
    int32_t nms;                 /* ORACLE: accepted boundaries lie > nms apart; 0 = no suppression (default 8) */
    int32_t beta;                /* ORACLE: max_chunks = (nk / block) * beta, >= 1 (default 8) */
    int32_t window;              /* ORACLE: w keys on each side of a gap, >= 1 (default 4) */
    int32_t smooth_ends;         /* ORACLE: 0 = gaps t in [w-1, nk-w) (default), 1 = [2w-1, nk-2w) (the labeler's) */
    int32_t per_kv_head;         /* 0 = one plan for all heads (default), 1 = one per KV head */
    int32_t pad_dilution;        /* 1 = the reference's tail-block mean over `block` rows, times sqrt(real):
                                    scales that block's scores by |B| / block; never changes the plan (default 0) */
    int32_t global_overwrite;    /* 1 = the reference's overwrite of the lowest keys by the globals (default 0) */
    int32_t span_min;            /* runs of >= span_min keys become spans, >= 1 (default 64) */
} ak_dhsa_params;

AK_API void ak_dhsa_params_init(ak_dhsa_params *p);
/** The planner (common signature above). The plan's name records the parameters. */
AK_API ak_status ak_dhsa_plan(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t, const ak_dhsa_params *params,
                              ak_sparse **out, ak_dyn_info *info);
/**
 * The chunk boundaries the planner uses for (sequence batch, plan head head): b_0 = 0 < ... < b_C = nk,
 * *n_boundaries = C + 1 entries written to boundaries[cap] (AK_ERR_INVALID_ARGUMENT naming cap when it is
 * too small; nk + 1 always suffices). Compute them once (e.g. with the oracle) and pass them to later
 * layers as AK_DHSA_GIVEN: the reference shares boundaries across layers.
 */
AK_API ak_status ak_dhsa_boundaries(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                    const ak_dhsa_params *params, int32_t batch, int32_t head, int32_t *boundaries,
                                    int32_t cap, int32_t *n_boundaries);
/**
 * The chunk scores of (batch, head) for the chunks of boundaries[0 .. n) (a valid AK_DHSA_GIVEN list
 * with 0 and nk included, n >= 2): scores[m * (n - 1) + c] = score(B_m, C_c) for the
 * n_qb = ceil(S / block) sparse query blocks (f32 products, as the planner computes them).
 */
AK_API ak_status ak_dhsa_scores(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                const ak_dhsa_params *params, int32_t batch, int32_t head, const int32_t *boundaries,
                                int32_t n, float *scores);
/**
 * The oracle's gap ratios from an attention matrix attn[i * ld + j] (row = query position i, n x n,
 * head-averaged probabilities; only j <= i is read). For gap t (between keys t and t+1), window w:
 *   a_past = sum over rows i >= t + w of attn[i][t-w+1 .. t],  a_fut = the same over keys t+1 .. t+w,
 *   ratio[t] = (max(a_past, a_fut) + 1e-6) / (min(a_past, a_fut) + 1e-6)   (double sums)
 * for t in [w-1, n-w) (smooth_ends = 1: [2w-1, n-2w)); ratio[t] = 0 elsewhere. O(n^2).
 */
AK_API ak_status ak_dhsa_label_ratios(ak_ctx *ctx, const float *attn, int32_t n, int64_t ld, int32_t window,
                                      int32_t smooth_ends, float *ratio);
/**
 * Boundaries from gap ratios ratio[0 .. n) (gap t -> boundary t + 1), the reference's rule: f = n -
 * instruction_tokens is forced when 0 < instruction_tokens < n; candidates are the gaps with ratio > theta
 * and boundary in (0, n) (and < f when forced), taken by (ratio desc, index asc); a candidate is accepted
 * when it lies > nms from every accepted boundary (the forced one included; nms = 0: always), until
 * max_chunks boundaries (the forced one counted, and kept even when max_chunks = 0). Output: 0, the
 * accepted boundaries ascending, n (*n_boundaries entries; cap as in ak_dhsa_boundaries).
 */
AK_API ak_status ak_dhsa_select_boundaries(ak_ctx *ctx, const float *ratio, int32_t n, float theta, int32_t nms,
                                           int32_t max_chunks, int32_t instruction_tokens, int32_t *boundaries,
                                           int32_t cap, int32_t *n_boundaries);
/* ---- DHSA (end) ---- */

/* ---- Routing attention (begin) ---- */
/**
 * Routing attention (Routing Transformer, Roy et al., TACL 2021; docs/dynamic/routing.md): online k-means
 * routing, attention restricted to clusters, outputs of rows in several clusters averaged. Causal or not
 * (desc->causal); windows, softcap, ALiBi, sinks and seqused_k are refused. Plan: n_heads = Hq, one gathered
 * query block per cluster (n_qblocks = C, block_q = wq), combine = AK_SPARSE_MEAN.
 *
 * Per (sequence b, KV head g), with the G = Hq / Hkv query heads h = g*G .. g*G+G-1 of its group:
 *   routing vectors  x^ = norm(x) of every query row (each query head) and key row (KV head g), in f32:
 *                    norm L2 (default): x / max(|x|_2, 1e-12); LAYER: (x - mean(x)) / sqrt(var(x) + 1e-6)
 *                    (LayerNorm without gain or bias, population variance)
 *   centroids        mu[c], c < C, of KV head g: given (params->centroids) or fitted on this sequence (below);
 *                    the G query heads share their KV head's centroids
 *   similarity       sim(c, t) = x^_t . mu[c]
 *   query members    Mq(h, c) = the wq query rows of head h with the largest sim(c, .) (ties: lower row),
 *                    sorted by row; every cluster has exactly wq rows, a row may be in 0, 1 or several
 *   key members      Mk(g, c) = the wk keys of KV head g with the largest sim(c, .) (ties: lower key), sorted;
 *                    share_qk = 1: Mk(h, c) = Mq(h, c) (key j = the query row's own position; nq == nk)
 *   attention        row i of cluster c attends to the keys j in Mk(c) with j <= pos(i) when causal
 *                    (ORIGINAL positions, pos(i) = i + nk - nq; not the rank inside the cluster), with its own
 *                    softmax; no memory / null key-values
 *   output           O(i) = mean over the clusters holding i of their outputs (a cluster in which i sees no
 *                    key contributes 0); rows in no cluster: O = 0, LSE = -inf; LSE = log(sum e^LSE_cluster)
 * Sizes: C = n_clusters, or round(sqrt(nk)) (at least 1) when 0; wq = window, or ceil(nq / C) when 0;
 * wk = window_k, or window when only that is given, or ceil(nk / C); each clamped to [.., nq] / [.., nk]
 * (w > N means w = N: C = 1, w = N is dense attention).
 * Fitting (centroids == NULL): on the pool of routing vectors of the group (the G query heads' rows, then
 * the keys unless share_qk), init = FARTHEST: mu[0] = pool[0], then repeatedly the pool vector farthest
 * (Euclidean) from its nearest centroid (ties: first in the pool); EVEN: mu[c] = pool[floor(c * P / C)]
 * (P = pool size); then `iters` Lloyd steps (stopping early when no assignment changes): assign every
 * vector to argmax_c x^ . mu[c] (ties: lower c), mu[c] = the mean of its vectors, renormalised to unit
 * length under L2 (spherical k-means); a cluster without vectors keeps its centroid. Deterministic.
 * Cost per (b, g): (iters + 1) * P * C * d (fit) + (G * nq + nk) * C * d (routing) multiply-adds, plus
 * C top-w selections; attention O(C * wq * wk * d) per head.
 * Errors (AK_ERR_INVALID_ARGUMENT naming the field; *out NULL): n_clusters < 0 or > AK_ROUTING_MAX_CLUSTERS,
 * n_clusters = 0 with centroids, window < 0, window_k < 0, window_k with share_qk, share_qk with nq != nk,
 * norm / init / share_qk / centroids_per_batch not 0 or 1, centroids_per_batch without centroids, iters
 * outside [0, 1000], decay outside (0, 1), a non-finite centroid, B * Hq * C * max(wq, wk) >= 2^31; and the
 * masks above in desc.
 */
#define AK_ROUTING_NORM_L2 0
#define AK_ROUTING_NORM_LAYER 1
#define AK_ROUTING_INIT_FARTHEST 0
#define AK_ROUTING_INIT_EVEN 1
#define AK_ROUTING_MAX_CLUSTERS 65536
typedef struct ak_routing_params {
    int32_t n_clusters;          /* C; 0 = round(sqrt(nk)) (default 0) */
    int32_t window;              /* wq, query rows per cluster; 0 = ceil(nq / C) (default 0) */
    int32_t window_k;            /* wk, keys per cluster; 0 = window if > 0, else ceil(nk / C) (default 0) */
    int32_t share_qk;            /* 1 = keys of a cluster are its query members (default 0) */
    int32_t norm;                /* AK_ROUTING_NORM_L2 (default, lucidrains) or AK_ROUTING_NORM_LAYER (TF) */
    const float *centroids;      /* NULL = fit on the input (default); else f32 [Hkv][C][d], or [B][Hkv][C][d]
                                    with centroids_per_batch; all finite */
    int32_t centroids_per_batch; /* 0 (default) / 1, see centroids */
    int32_t iters;               /* Lloyd iterations when fitting, 0..1000 (default 10) */
    int32_t init;                /* AK_ROUTING_INIT_FARTHEST (default) or AK_ROUTING_INIT_EVEN */
    float decay;                 /* EMA decay of ak_routing_kmeans_update, in (0, 1) (default 0.999) */
} ak_routing_params;
/** Defaults: C auto, windows auto, share_qk 0, L2, fitted (farthest init, 10 iterations), decay 0.999. */
AK_API void ak_routing_params_init(ak_routing_params *p);
/** The planner (common contract above); spec string "routing:n_clusters=64,window=64,norm=l2,iters=10". */
AK_API ak_status ak_routing_plan(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                 const ak_routing_params *params, ak_sparse **out, ak_dyn_info *info);
/**
 * The centroids the planner fits when params->centroids is NULL: centroids[((b * Hkv + g) * C + c) * d + k]
 * (f32, B * Hkv * C * d values), C = params->n_clusters, which must be given (>= 1). Passing them back with
 * centroids_per_batch = 1 gives the same plan. params->centroids must be NULL.
 */
AK_API ak_status ak_routing_fit(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                const ak_routing_params *params, float *centroids);
/**
 * One online k-means (EMA) step, as in training: for each of n_heads heads, the n routing vectors
 * x [n_heads][n][dim] (f32, raw: normalised here by params->norm) are assigned to argmax_c x^ . mu[c]
 * (ties: lower c; assign [n_heads][n] receives it, may be NULL); then every cluster c with n_c > 0 vectors:
 *   m_c = (1 / n_c) * sum of its x^   (L2: m_c / |m_c|, unless 0)
 *   mu[c] <- decay * mu[c] + (1 - decay) * m_c
 * and clusters without vectors keep mu[c]. centroids [n_heads][C][dim] f32 in/out, C = params->n_clusters
 * (>= 1); decay = params->decay in (0, 1). x and centroids must be finite. Nothing is written on failure.
 */
AK_API ak_status ak_routing_kmeans_update(ak_ctx *ctx, const ak_routing_params *params, int32_t n_heads, int32_t n,
                                          int32_t dim, const float *x, float *centroids, int32_t *assign);
/* ---- Routing attention (end) ---- */

/* ---- Dynamic Mask Attention (begin) ---- */
/**
 * Dynamic Mask Attention, inference form (Shi et al. 2025, arXiv 2508.02124; flash-dmattn; docs/dynamic/dma.md).
 * Reads t->q, t->k and t->v (the mask and the bias come from the values). No window, softcap, ALiBi, sinks or
 * seqused_k in desc. Causal (the paper's form) or not; any nq, nk (bottom-right: pos(i) = i + nk - nq; rows with
 * pos(i) < 0 see nothing). Visible keys of row i: C(i) = {j <= pos(i)} when causal, all nk keys otherwise.
 *
 * Per (sequence b, KV head h) -- its G = Hq / Hkv query heads share mask and bias --, in double, rounded once:
 *   z[t]    = sum over h', c of w_dt[h][h' * dv + c] * V[b][h'][t][c]  +  dt_bias[h]   (dt_bias NULL: 0)
 *   u[t]    = (float)(a[h] * softplus(z[t]))     the selection score (-0 counts as +0)
 *   bias[t] = u[t]                   bias_form AK_DMA_BIAS_LOG (default; the current reference code)
 *           = (float)exp(u[t])       bias_form AK_DMA_BIAS_EXP (the paper / first code); exp is monotone, so the
 *                                    selection is the same in both forms, only the added logit differs
 *   logit(i, j) = scale * q_i . k_j + bias[j] over the active keys of row i; softmax; times V.
 * Active keys of row i:
 *   nk <= window:  C(i) (dense attention plus the bias; the mask applies only when nk > window, as the reference)
 *   AK_DMA_TOPK:   the min(window, |C(i)|) keys of C(i) first in the order (u descending, index ascending) --
 *                  an exact per-row top-w, ties to the smaller index
 *   AK_DMA_RELU:   {j in C(i) : u[j] > 0} (bias > 0 in the log form, > 1 in the exp form; no window cap); a row
 *                  may be empty (O = 0, LSE = -inf). Note: u = a[h] * softplus(z) has the sign of a[h], so this
 *                  mask keeps every key (a > 0, save softplus underflow) or none (a <= 0) of a head.
 * The plan: n_batch = B, n_heads = Hkv, causal = desc->causal, fixed query blocks of block_q rows, key_bias = bias.
 * Causal TOPK with nk > window: key_score[j] = nk - rank(j) (rank 0 = the first key of the order; exact floats, so
 * nk <= 2^24), row_thresh[i] = key_score of the window-th key of C(i) in the order (-inf if |C(i)| <= window), all
 * rows in one pass with a window-sized min-heap (O(nk log w)); query block [r0, r1) lists {j <= pos(r1 - 1) :
 * key_score[j] >= row_thresh[r0']} (r0' = its first row with pos >= 0; at most window + block_q - 1 keys, a superset
 * of each row's set) as spans (runs of >= 64 keys) and cols, and the cut key_score >= row_thresh does the rest.
 * Non-causal TOPK: every block lists the window keys of the order (no cut). RELU: {j : u[j] > 0} (no cut). Dense:
 * one span [0, pos(r1 - 1) + 1) (all keys when not causal), no cut.
 */
typedef enum ak_dma_bias_form {
    AK_DMA_BIAS_LOG = 0,         /* bias = a * softplus(z) (default; current flash-dmattn / Doge code) */
    AK_DMA_BIAS_EXP = 1          /* bias = exp(a * softplus(z)) (paper, first code); exp(u) must stay finite */
} ak_dma_bias_form;

typedef enum ak_dma_mask_type {
    AK_DMA_TOPK = 0,             /* per-row top-window (default) */
    AK_DMA_RELU = 1              /* u > 0 */
} ak_dma_mask_type;

typedef struct ak_dma_params {
    int32_t window;              /* w >= 1 (default 2048, Doge's keep_window_size) */
    int32_t bias_form;           /* ak_dma_bias_form (default AK_DMA_BIAS_LOG) */
    int32_t mask_type;           /* ak_dma_mask_type (default AK_DMA_TOPK) */
    int32_t block_q;             /* query rows per plan block, >= 1 (default 64) */
    /* The learned parameters of the layer (the model's dt_proj and A), f32, finite; required unless untrained: */
    int32_t num_heads_kv;        /* Hkv the arrays are made for: must equal desc->num_heads_kv (default 0) */
    int32_t head_dim_v;          /* dv they are made for: must equal desc's value head dim (default 0) */
    const float *w_dt;           /* [Hkv][Hkv * dv], row-major (torch nn.Linear weight); input column h' * dv + c
                                    is channel c of KV head h' (the values of one token, heads concatenated) */
    const float *dt_bias;        /* NULL (default) or [Hkv] */
    const float *a;              /* [Hkv] */
    /* 1: the "untrained" form used by tools (ak_dyn_plan_named): a = 1, z[t] = sum_c V[b][h][t][c] / sqrt(dv);
       w_dt, dt_bias and a must then be NULL. Default 0. */
    int32_t untrained;
} ak_dma_params;

AK_API void ak_dma_params_init(ak_dma_params *p);
/**
 * The planner (common signature above). Spec string keys (scalars only): window, bias_form (log | exp | 0 | 1),
 * mask_type (topk | relu | 0 | 1), block_q, untrained (0 | 1). Errors: window or block_q < 1, a bad enum, untrained
 * not 0/1 -> AK_ERR_INVALID_ARGUMENT; w_dt or a NULL while untrained = 0 -> AK_ERR_NULL_POINTER; num_heads_kv /
 * head_dim_v other than the descriptor's -> AK_ERR_SHAPE_MISMATCH; a non-finite w_dt / dt_bias / a entry, a
 * non-finite u or bias (non-finite V, exp overflow), causal TOPK with nk > 2^24 (and nk > window) ->
 * AK_ERR_INVALID_ARGUMENT. The plan depends on V: make a new one when the values change.
 */
AK_API ak_status ak_dma_plan(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t, const ak_dma_params *params,
                             ak_sparse **out, ak_dyn_info *info);
/**
 * For inspection and tests: u[nk] (the selection score) and bias[nk] (the added logit) of (sequence b, KV head h)
 * as above; either output may be NULL. desc/t/params checked as by the planner; b in [0, B), h in [0, Hkv).
 */
AK_API ak_status ak_dma_scores(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t, const ak_dma_params *params,
                               int32_t b, int32_t h, float *u, float *bias);
/* ---- Dynamic Mask Attention (end) ---- */

/* ---- Block top-k sparse decoding, Kinetics (begin) ---- */
/**
 * Kinetics block top-k sparse decoding (Sadhukhan et al. 2025; docs/dynamic/kinetics.md). A DECODE-path
 * method, not a prefill planner: one new query row per sequence (desc.q_len = 1) against each sequence's
 * KV cache of ak_decode (contiguous or paged, any page size and layout, f32 / bf16 / f16 / i8 KV; the
 * sequences of a batch may have different lengths).
 *
 * Selection, per (sequence b, KV head), shared by the G = Hq / Hkv query heads of that KV head. L = the
 * sequence's keys (the new token included); blocks of bs = block tokens aligned at token 0 (block p =
 * tokens [p*bs, (p+1)*bs); LiteSys offsets its blocks by the 4 sink tokens instead: see the doc);
 * C = floor(L / bs) completed blocks.
 *   n_full = round_up(sink + local + topk * bs, bs).  L <= n_full: every key is attended (dense).
 *   Otherwise the candidates are the completed blocks not entirely inside the sink [0, sink) or the local
 *   window [L - local, L): p in [floor(sink / bs), min(C, ceil((L - local) / bs))) -- at least topk of them.
 *   Score of candidate p (s = the softmax scale, h over the G query heads):
 *     AK_KINETICS_MEAN_KEY (default, the efficient form): mean_h s * q_h . kbar_p, kbar_p = the mean of the
 *       bs keys of block p (double sums rounded to f32), read from an ak_kinetics_index or computed on the fly;
 *     AK_KINETICS_MEAN_LOGIT (LiteSys's oracle): mean_h mean_{j in p} s * q_h . k_j (every logit of the
 *       candidates is computed). Equal to the first by linearity: the same blocks up to rounding.
 *   The topk best scores are chosen (ties: the lower block id). Attended set: [0, sink) U the chosen blocks
 *   U [L - local, L) U the current partial block [C*bs, L) (set semantics: a key counts once).
 * Attention: exact softmax over the attended set (fp32 accumulation, online over tiles), the same set for
 * the G heads; O and LSE as ak_decode (LSE natural log, includes the sink logit when has_sinks; a sequence
 * with no key gives O = 0, LSE = -inf or the sink). Bitwise identical for every thread count.
 * Supported desc options: scale, causal (no effect at q_len 1), has_sinks, return_lse, dtype_q / dtype_o.
 * Refused (AK_ERR_INVALID_ARGUMENT): q_len != 1, qo_indptr, prefix, windows, softcap, ALiBi. tile_n and
 * num_workers are ignored.
 */
typedef enum ak_kinetics_scoring {
    AK_KINETICS_MEAN_KEY = 0,    /* q . mean of the block's keys (compressed keys) */
    AK_KINETICS_MEAN_LOGIT = 1   /* mean of the exact logits over the block (LiteSys oracle) */
} ak_kinetics_scoring;

typedef struct ak_kinetics_params {
    int32_t block;               /* bs, tokens per block, >= 1 (default 16); need not equal the page size */
    int32_t topk;                /* blocks chosen, >= 1 (default 64) */
    int32_t sink;                /* first tokens always attended, >= 0 (default 4) */
    int32_t local;               /* last tokens always attended, >= 0 (default 64) */
    int32_t scoring;             /* ak_kinetics_scoring (default AK_KINETICS_MEAN_KEY) */
} ak_kinetics_params;

AK_API void ak_kinetics_params_init(ak_kinetics_params *p);

/**
 * Compressed keys: per (slot, KV head) the mean of the keys of every completed block, f32, each head's
 * means contiguous. Slots are sequence ids 0 .. max_seqs-1 (batch position b uses slot slots[b], or b when
 * slots is NULL). The index keeps a pointer to ctx (destroy it first); it is not thread-safe.
 * update: after appending tokens to the cache, computes the means of the blocks completed since the last
 *   update (O(new blocks * bs * d)), from the cache described by kv / t (the lengths after the append).
 *   A sequence shorter than the blocks held for its slot -> AK_ERR_INVALID_ARGUMENT (reset the slot for a
 *   new sequence); a slot out of range or given twice -> AK_ERR_INVALID_ARGUMENT; Hkv or d different from
 *   the index -> AK_ERR_SHAPE_MISMATCH. The result equals the means recomputed from scratch, bit for bit.
 * reset: the slot holds no block (its memory is kept). blocks: completed blocks held for the slot.
 * mean: copy kbar (d floats) of (slot, head, block).
 */
typedef struct ak_kinetics_index ak_kinetics_index;
AK_API ak_status ak_kinetics_index_create(ak_ctx *ctx, int32_t max_seqs, int32_t num_heads_kv, int32_t head_dim,
                                          int32_t block, ak_kinetics_index **out);
AK_API void ak_kinetics_index_destroy(ak_kinetics_index *index);
AK_API ak_status ak_kinetics_index_update(ak_kinetics_index *index, const ak_kv_desc *kv, const ak_kv_tensors *t,
                                          const int32_t *slots);
AK_API ak_status ak_kinetics_index_reset(ak_kinetics_index *index, int32_t slot);
AK_API ak_status ak_kinetics_index_blocks(const ak_kinetics_index *index, int32_t slot, int32_t *n_blocks);
AK_API ak_status ak_kinetics_index_mean(const ak_kinetics_index *index, int32_t slot, int32_t head, int32_t block,
                                        float *out);

/**
 * One decode step: O[B][Hq][1][dv] (and LSE[B][Hq][1]) of the selected keys, tensors and checks as
 * ak_decode (t->q [B][Hq][1][d], t->o, t->lse, t->sinks, t->kv). params NULL = defaults. index NULL = the
 * compressed keys are computed on the fly (reads every key of the candidates: the index is what makes the
 * scoring cheap); with AK_KINETICS_MEAN_KEY an index must match (block, Hkv, d) and hold exactly
 * floor(len_b / block) blocks for every sequence's slot (AK_ERR_INVALID_ARGUMENT otherwise: call
 * ak_kinetics_index_update after appending); AK_KINETICS_MEAN_LOGIT ignores it. slots: as for the index
 * (NULL = b). info (may be NULL): est_seconds = the whole call (selection and attention run fused per
 * (sequence, KV head)), density = attended keys / all keys, n_dense_heads = (sequence, KV head) pairs run
 * dense, one explain line per (sequence, KV head).
 */
AK_API ak_status ak_kinetics_decode(ak_ctx *ctx, const ak_decode_desc *desc, const ak_decode_tensors *t,
                                    const ak_kinetics_params *params, const ak_kinetics_index *index,
                                    const int32_t *slots, ak_dyn_info *info);
/**
 * The selection alone (reads t->q and t->kv only): blocks [B][Hkv][topk] = the chosen block ids of each
 * (sequence, KV head) in ascending order, -1 past the count; counts [B][Hkv] = the number chosen (topk
 * whenever L > n_full), or -1 when the pair runs dense.
 */
AK_API ak_status ak_kinetics_select(ak_ctx *ctx, const ak_decode_desc *desc, const ak_decode_tensors *t,
                                    const ak_kinetics_params *params, const ak_kinetics_index *index,
                                    const int32_t *slots, int32_t *blocks, int32_t *counts);
/* ---- Block top-k sparse decoding, Kinetics (end) ---- */

/* ---- Model runner (begin) ---- */
/* ------------------------------------------------------------------------------------------------
 * Model runner: GGUF files, quantized weights, tokenizer, transformer forward (Gemma 3), sampling.
 * Everything here is built on the public attention API above (docs/MODEL.md).
 * ---------------------------------------------------------------------------------------------- */

/* ---- GGUF (begin) ---- */
/**
 * A GGUF v2/v3 file, memory-mapped read-only (or a caller's buffer). Opening validates everything
 * before any accessor can see it: magic "GGUF", version 2 or 3, counts (tensor_count <= 2^20,
 * kv_count <= 2^20, array lengths bounded by the file size), every string inside the file, value types
 * 0..12 (nested arrays refused, as llama.cpp does), bools 0 or 1, keys (non-empty, no NUL byte, unique),
 * general.alignment (u32, a power of two, default 32), tensor names (non-empty, < 64 bytes, no NUL byte,
 * unique), n_dims in 1..4, ne[i] >= 1 with a product below 2^62, ne[0] a multiple of the type's block size,
 * known ggml type ids (ak_qtype), offsets aligned and the data [offset, offset + nbytes) inside the file,
 * no two tensors' data overlapping (offsets need not be in file order: ggml's "sequential" rule is not
 * required). A violation -> AK_ERR_BAD_FILE with the byte position and the field in ak_ctx_last_error;
 * an unopenable file -> AK_ERR_IO; NULL ctx / path / data / out -> AK_ERR_NULL_POINTER (*out = NULL on
 * every failure). Strings returned by the accessors stay valid until ak_gguf_close (docs/model/gguf.md).
 * The ak_gguf keeps a pointer to ctx: close it before destroying the context.
 */
typedef struct ak_gguf ak_gguf;

/** GGUF metadata value types (the file's ids). */
typedef enum ak_gguf_vtype {
    AK_GGUF_U8 = 0, AK_GGUF_I8 = 1, AK_GGUF_U16 = 2, AK_GGUF_I16 = 3, AK_GGUF_U32 = 4, AK_GGUF_I32 = 5,
    AK_GGUF_F32 = 6, AK_GGUF_BOOL = 7, AK_GGUF_STRING = 8, AK_GGUF_ARRAY = 9, AK_GGUF_U64 = 10,
    AK_GGUF_I64 = 11, AK_GGUF_F64 = 12
} ak_gguf_vtype;

/** Weight storage types (ggml type ids). Every one listed can be dequantized and multiplied. */
typedef enum ak_qtype {
    AK_Q_F32 = 0, AK_Q_F16 = 1, AK_Q_Q4_0 = 2, AK_Q_Q4_1 = 3, AK_Q_Q5_0 = 6, AK_Q_Q5_1 = 7, AK_Q_Q8_0 = 8,
    AK_Q_Q4_K = 12, AK_Q_Q5_K = 13, AK_Q_Q6_K = 14, AK_Q_BF16 = 30
} ak_qtype;

/** "f32", "q4_K", ... or NULL for an id attnkit does not know. */
AK_API const char *ak_qtype_name(int32_t type);
/** Elements per block (1 for F32/F16/BF16, 32 for Q*_0/_1, 256 for K-quants); 0 for an unknown id. */
AK_API int32_t ak_qtype_block_elems(int32_t type);
/** Bytes per block; 0 for an unknown id. */
AK_API int32_t ak_qtype_block_bytes(int32_t type);

/** Open and validate a file (mmap). */
AK_API ak_status ak_gguf_open(ak_ctx *ctx, const char *path, ak_gguf **out);
/** The same over a caller's buffer (not copied; it must outlive the ak_gguf). Used by tests and fuzzers. */
AK_API ak_status ak_gguf_open_memory(ak_ctx *ctx, const void *data, size_t size, ak_gguf **out);
AK_API void ak_gguf_close(ak_gguf *g);

typedef struct ak_gguf_header {
    uint32_t version;
    int64_t n_tensors, n_kv;
    int64_t alignment;           /* general.alignment or 32 */
    int64_t data_offset;         /* start of the tensor data section in the file */
    int64_t file_size;
} ak_gguf_header;
AK_API ak_status ak_gguf_get_header(const ak_gguf *g, ak_gguf_header *h);

/** Index of a metadata key, or -1 when absent (also for NULL arguments). */
AK_API int64_t ak_gguf_find_key(const ak_gguf *g, const char *key);
/** Key i (0 <= i < n_kv): its name (NUL-terminated copy owned by g), type, and for arrays the element type
 *  and count (elem_type = -1, count = 1 for scalars); each output may be NULL. Keys are in file order.
 *  AK_ERR_INVALID_ARGUMENT for i out of range. */
AK_API ak_status ak_gguf_key_info(const ak_gguf *g, int64_t i, const char **name, ak_gguf_vtype *type,
                                  int32_t *elem_type, int64_t *count);
/** Scalar getters by key. _int accepts every integer type and bool (range-checked into int64; u64 above
 *  INT64_MAX -> AK_ERR_INVALID_ARGUMENT), _float accepts f32 / f64, _str a string (bytes, not NUL-terminated
 *  in the file: len is given and may be NULL; *s is a NUL-terminated copy owned by g). Absent key ->
 *  AK_ERR_INVALID_ARGUMENT "key not found"; another type -> AK_ERR_UNSUPPORTED_DTYPE; NULL key or
 *  output -> AK_ERR_NULL_POINTER. */
AK_API ak_status ak_gguf_get_int(const ak_gguf *g, const char *key, int64_t *out);
AK_API ak_status ak_gguf_get_float(const ak_gguf *g, const char *key, double *out);
AK_API ak_status ak_gguf_get_str(const ak_gguf *g, const char *key, const char **s, size_t *len);
/** Array element i as above (numeric arrays via _int/_float, string arrays via _str). */
AK_API ak_status ak_gguf_get_arr_int(const ak_gguf *g, const char *key, int64_t i, int64_t *out);
AK_API ak_status ak_gguf_get_arr_float(const ak_gguf *g, const char *key, int64_t i, double *out);
AK_API ak_status ak_gguf_get_arr_str(const ak_gguf *g, const char *key, int64_t i, const char **s, size_t *len);
/** A numeric array in place: element type, count and a pointer to the packed little-endian elements in
 *  the mapping (possibly unaligned: copy with memcpy). String arrays -> AK_ERR_UNSUPPORTED_DTYPE. */
AK_API ak_status ak_gguf_get_arr_data(const ak_gguf *g, const char *key, ak_gguf_vtype *elem_type,
                                      int64_t *count, const void **data);

typedef struct ak_gguf_tensor {
    const char *name;            /* NUL-terminated, owned by g */
    int32_t type;                /* ak_qtype */
    int32_t n_dims;              /* 1..4 */
    int64_t ne[4];               /* ne[0] is the contiguous (row) length; unused dims are 1 */
    int64_t offset;              /* relative to the data section */
    int64_t nbytes;              /* (ne0 / block_elems) * block_bytes * ne1 * ne2 * ne3 */
    const void *data;            /* in the mapping */
} ak_gguf_tensor;
/** Index of a tensor by name, or -1. */
AK_API int64_t ak_gguf_find_tensor(const ak_gguf *g, const char *name);
AK_API ak_status ak_gguf_tensor_info(const ak_gguf *g, int64_t i, ak_gguf_tensor *out);
/* ---- GGUF (end) ---- */

/* ---- Quantized weights (begin) ---- */
/**
 * Dequantize n elements (a multiple of the type's block size) stored as `type` at src into f32 dst,
 * exactly as ggml's dequantize_row_* (and gguf-py's numpy dequantizers) do. AK_ERR_INVALID_ARGUMENT for
 * n not a multiple of the block, AK_ERR_UNSUPPORTED_DTYPE for an unknown type.
 */
AK_API ak_status ak_dequantize(ak_ctx *ctx, int32_t type, const void *src, float *dst, int64_t n);

/**
 * y[i][o] = sum_k x[i][k] * W[o][k] for i < m, o < n_out: a weight matrix W of n_out rows of n_in elements
 * stored as `type` (rows back to back, each row (n_in / block_elems) blocks; n_in a multiple of the
 * block), times m rows of f32 activations x (row stride ldx >= n_in), into f32 y (row stride ldy >= n_out).
 * Weights are dequantized on the fly (never materialised whole) to exactly the values of ak_dequantize;
 * the products accumulate in f32 (x is not quantized). m <= 4 runs a fused dequantize-dot (memory-bound
 * decode; per output 8 to 32 lanes of partial sums); larger m dequantizes panels of W once and runs a
 * register-blocked f32 GEMM on them (per output one FMA chain in k order). So y's rows for m <= 4 and for
 * m > 4 may differ in the last bits; accuracy: within 2x the error of a naive f32 dot (docs/model/qgemm.md).
 * Threads: the context's. Deterministic: the bytes of y do not depend on the thread count.
 * x and y: any 4-byte-aligned address (else AK_ERR_INVALID_ARGUMENT); W: any address. Only y[i][0..n_out)
 * is written (the padding up to ldy is not touched). m = 0 or n_out = 0: nothing is read or written, AK_OK
 * (the pointers may then be NULL; type, n_in, ldx, ldy are still checked).
 * Errors: NULL ctx / w / x / y -> AK_ERR_NULL_POINTER; unknown type -> AK_ERR_UNSUPPORTED_DTYPE; m or n_out
 * < 0, n_in not a positive multiple of the block, ldx < n_in, ldy < n_out, byte extents of W, x or y that
 * overflow -> AK_ERR_INVALID_ARGUMENT; y's byte span [y, y + ((m-1) ldy + n_out) * 4) overlapping the
 * span of x or of W -> AK_ERR_OUTPUT_OVERLAP.
 */
AK_API ak_status ak_qgemm(ak_ctx *ctx, int32_t type, const void *w, int64_t n_out, int64_t n_in,
                          const float *x, int64_t m, int64_t ldx, float *y, int64_t ldy);
/* ---- Quantized weights (end) ---- */

/* ---- Tokenizer (begin) ---- */
/**
 * The SentencePiece-style tokenizer of a GGUF vocabulary (tokenizer.ggml.model = "llama"), producing
 * llama.cpp's token ids: special-token partition (control / user-defined / unknown texts, longest first),
 * spaces -> U+2581, optional space prefix, bigram merges by score, byte fallback <0xHH>. Built from the
 * tokenizer.ggml.* keys; other tokenizer models (or none) -> AK_ERR_UNSUPPORTED_DTYPE; tokens missing or
 * not a string array, scores / token_type of the wrong type or shorter than the tokens, special-id or flag
 * keys of the wrong type, add_bos/add_eos without an id -> AK_ERR_BAD_FILE. Like llama.cpp it forces
 * CONTROL on the EOT / EOM / FIM / end-of-generation tokens it recognises by text ("<end_of_turn>", "</s>",
 * ...; docs/model/tokenizer.md). Independent of the ak_gguf after creation (it copies what it needs), but
 * it keeps a pointer to ctx (errors, allocations): destroy it before the context. One tokenizer may be used
 * from several threads at once (calls share ctx's last-error message).
 */
typedef struct ak_tokenizer ak_tokenizer;
AK_API ak_status ak_tokenizer_create(ak_ctx *ctx, const ak_gguf *g, ak_tokenizer **out);
AK_API void ak_tokenizer_destroy(ak_tokenizer *tok);
/**
 * Tokenize len bytes of text. add_special: prepend BOS (and append EOS) as the vocabulary asks;
 * parse_special: match control / unknown token texts (user-defined ones always match), as llama.cpp.
 * Writes at most cap ids; *n_out = the number of ids the text has (AK_ERR_CAPACITY when > cap: call
 * again with a larger buffer; ids may be NULL when cap is 0, to count). Invalid UTF-8 is tokenized byte
 * by byte, never refused. text may be NULL when len is 0; len must be below 2^29 (512 MiB) per call
 * (AK_ERR_INVALID_ARGUMENT). A byte that is in no token in a vocabulary without <0xHH> nor one-byte tokens
 * -> AK_ERR_INVALID_ARGUMENT (llama.cpp throws there).
 */
AK_API ak_status ak_tokenize(const ak_tokenizer *tok, const char *text, size_t len, int add_special,
                             int parse_special, int32_t *ids, int32_t cap, int32_t *n_out);
/** The bytes of one token for printing (U+2581 -> space, <0xHH> -> the byte; control tokens empty unless
 *  special). Writes at most cap bytes (no NUL); *len = bytes needed (AK_ERR_CAPACITY if > cap). */
AK_API ak_status ak_token_to_piece(const ak_tokenizer *tok, int32_t id, int special, char *buf, size_t cap,
                                   size_t *len);
typedef struct ak_vocab_info {
    int32_t n_vocab;
    int32_t bos, eos, eot, unk, pad;  /* -1 when the vocabulary has none (keys, else the SPM defaults
                                         BOS 1, EOS 2, UNK 0 when in range; EOT also detected by text) */
    int32_t add_bos, add_eos, add_space_prefix;
} ak_vocab_info;
AK_API ak_status ak_tokenizer_info(const ak_tokenizer *tok, ak_vocab_info *info);
/** 1 if id ends generation, else 0 (also for a NULL tok or an id out of range): EOS, EOT, EOM and the
 *  other tokens llama.cpp puts in its end-of-generation set (for Gemma 3: <eos>, <end_of_turn>, </s>). */
AK_API int ak_token_is_eog(const ak_tokenizer *tok, int32_t id);
/* ---- Tokenizer (end) ---- */
/* ---- Transformer model (begin) ---- */
/**
 * A decoder-only transformer loaded from a GGUF file. Supported architecture: "gemma3" (Gemma 3: sandwich
 * RMSNorms with the +1 already in the weights, QK-norm, RoPE NEOX with a local and a global base, sliding-window
 * layers (llama.cpp's pattern: layer l is local iff l % 6 < 5) and global layers, GQA, gated GELU-tanh FFN, embedding
 * scale sqrt(n_embd), LM head tied to the embedding when output.weight is absent; docs/MODEL.md).
 * Loading validates the architecture keys and every tensor's name, shape and type; weights stay in the mapping in
 * their stored (quantized) types and are multiplied by ak_qgemm. Other architectures -> AK_ERR_UNSUPPORTED_DTYPE;
 * a missing or misshapen tensor -> AK_ERR_BAD_FILE naming it. The model keeps a pointer to ctx.
 */
typedef struct ak_model ak_model;
typedef struct ak_model_info {
    char arch[32];
    char name[96];
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
    int32_t n_ctx_train;       /* context length the model was trained for */
    int32_t sliding_window;    /* keys a local layer sees, the query's own included (512) */
    int32_t swa_period;        /* layer l is local iff l % swa_period < swa_period - 1 (6) */
    float rope_base_global, rope_base_local, rms_eps, embd_scale, attn_scale;
    int64_t n_params;          /* elements of all weight tensors */
    int64_t weight_bytes;      /* bytes of all weight tensors as stored */
} ak_model_info;
AK_API ak_status ak_model_load(ak_ctx *ctx, const char *path, ak_model **out);
AK_API void ak_model_free(ak_model *model);
AK_API ak_status ak_model_get_info(const ak_model *model, ak_model_info *info);
/** 1 if layer l is a sliding-window (local) layer, 0 if global, -1 for l out of range. */
AK_API int ak_model_layer_is_local(const ak_model *model, int32_t layer);
/** The model's tokenizer (owned by the model). */
AK_API const ak_tokenizer *ak_model_tokenizer(const ak_model *model);

/**
 * A session: one sequence's KV cache (contiguous per layer, n_ctx tokens, dtype F32 (default), BF16 or F16) and the
 * attention method of every layer. Not thread-safe; several sessions may share one model.
 * n_chunk: prefill chunk (tokens run through all layers together; each chunk attends to the cache and to itself
 * with bottom-right causal alignment); 0 = 512.
 */
typedef struct ak_session ak_session;
typedef struct ak_session_config {
    size_t size;               /* = sizeof(ak_session_config), set by ak_session_config_init */
    int32_t n_ctx;             /* tokens the cache holds (1 .. n_ctx_train; default 4096) */
    int32_t n_chunk;           /* prefill chunk (default 512) */
    ak_dtype kv_dtype;         /* F32 (default), BF16, F16 */
} ak_session_config;
AK_API void ak_session_config_init(ak_session_config *cfg);
AK_API ak_status ak_session_create(ak_model *model, const ak_session_config *cfg, ak_session **out);
AK_API void ak_session_free(ak_session *s);

/**
 * Attention of layer `layer` (0 .. n_layer-1; AK_LAYERS_GLOBAL = every global layer, AK_LAYERS_ALL = every layer):
 *  "dense"                        exact attention (the default; local layers keep their window);
 *  "<method>[:key=value,...]"     a content-aware planner by name (ak_dyn_plan_named: flexprefill, minference,
 *                                 mminference, anchor, dhsa, routing, dma) for the PROMPT: an ak_session_eval that
 *                                 starts at position 0 runs those layers' attention over the whole batch at once (no
 *                                 chunking for them) through the method's plan; every later eval (continuation,
 *                                 decode) on those layers is dense, as the methods define (prefill only);
 *  "streaming[:sinks=S,window=W]" attention sinks + sliding window (StreamingLLM: the first S keys and the last W
 *                                 keys, defaults 4 and 1024), for prefill and decode;
 *  "kinetics[:key=value,...]"     dense prefill, block top-k decode (ak_kinetics_decode; keys of ak_kinetics_params).
 * A spec is validated here (unknown method or key -> AK_ERR_INVALID_ARGUMENT). Local layers accept only "dense".
 */
#define AK_LAYERS_GLOBAL (-1)
#define AK_LAYERS_ALL (-2)
AK_API ak_status ak_session_set_attn(ak_session *s, int32_t layer, const char *spec);

/**
 * Run n tokens (n >= 1) at positions pos .. pos+n-1 (pos = ak_session_pos) and append them to the cache.
 * logits: NULL, or [rows][n_vocab] f32 where rows = 1 (the last token's logits) or rows = n (every token's).
 * Token ids out of [0, n_vocab) -> AK_ERR_INVALID_ARGUMENT; pos + n > n_ctx -> AK_ERR_CAPACITY (nothing runs).
 */
AK_API ak_status ak_session_eval(ak_session *s, const int32_t *tokens, int32_t n, float *logits, int32_t rows);
/**
 * Scoring without materialising logits: runs n tokens like ak_session_eval and, for every row j in [first, n-1),
 * writes nll[j - first] = -log softmax(logits_j)[tokens[j + 1]] (natural log) and, if top1 is not NULL,
 * top1[j - first] = argmax_v logits_j[v] (lowest id on ties). The LM head runs on blocks of rows, so memory stays
 * O(block * n_vocab) at any n (perplexity over 32k-token windows). first in [0, n].
 */
AK_API ak_status ak_session_eval_nll(ak_session *s, const int32_t *tokens, int32_t n, int32_t first, double *nll,
                                     int32_t *top1);
AK_API int32_t ak_session_pos(const ak_session *s);
/** Forget every token (the cache memory is kept). */
AK_API ak_status ak_session_reset(ak_session *s);
/** Called after every prefill chunk: done / total tokens of the current eval. NULL = none. */
AK_API ak_status ak_session_set_progress(ak_session *s, void (*fn)(void *user, int32_t done, int32_t total),
                                         void *user);

/** Cumulative timings and attention statistics of a session (ak_session_reset does not clear them). */
typedef struct ak_session_stats {
    int64_t tokens_prefill, tokens_decode;     /* tokens run by evals with n > 1 / n == 1 */
    double seconds_prefill, seconds_decode;
    double seconds_attention;                  /* inside attention calls (planning included) */
    double seconds_planning;                   /* content-aware estimation and plan building */
    double seconds_linear;                     /* ak_qgemm calls (LM head included) */
    double sparse_density;                     /* last sparse prefill: mean density over its sparse layers (0: none) */
} ak_session_stats;
AK_API ak_status ak_session_get_stats(const ak_session *s, ak_session_stats *st);

/**
 * Q/K/V dump for offline study (e.g. `attnkit sparse-eval --input npy:DIR/layerNN`): for each listed layer, the
 * rows of positions [pos_begin, pos_end) that later evals compute are written to DIR/layerNN/q.npy [Hq][L][d],
 * k.npy [Hkv][L][d], v.npy [Hkv][L][dv] (little-endian f32; q after QK-norm and RoPE, before the 1/sqrt(d) scale
 * that attention applies; k after QK-norm and RoPE) when the eval that completes the range ends (L = pos_end -
 * pos_begin). dir NULL = stop dumping. The directory must exist; the layer folders are created.
 */
AK_API ak_status ak_session_set_dump(ak_session *s, const char *dir, const int32_t *layers, int32_t n_layers,
                                     int32_t pos_begin, int32_t pos_end);

/** Token sampling. temperature 0 = greedy (argmax, lowest id on ties); else softmax(logits / temperature)
 *  restricted to the top_k most likely (0 = all) and then to the smallest set whose mass reaches top_p (1 = all),
 *  drawn with a xorshift generator advanced in *rng_state (any non-zero seed). */
typedef struct ak_sampler_params {
    float temperature;   /* >= 0 */
    float top_p;         /* (0, 1] */
    int32_t top_k;       /* >= 0 */
} ak_sampler_params;
AK_API ak_status ak_sample(ak_ctx *ctx, const float *logits, int32_t n_vocab, const ak_sampler_params *p,
                           uint64_t *rng_state, int32_t *token);
/* ---- Transformer model (end) ---- */
/* ---- Model runner (end) ---- */

/* ------------------------------------------------------------------------------------------------
 * Machine ceilings (what `attnkit peak` prints and benchmarks divide by)
 * ---------------------------------------------------------------------------------------------- */

typedef struct ak_peak {
    double fma_f32_gflops;    /* fp32 FMA peak with n_threads threads, best ISA <= ctx cap */
    double dot_bf16_gflops;   /* vdpbf16ps peak; 0 if the CPU lacks AVX512_BF16 */
    double dram_read_gbs;     /* streaming read bandwidth over a 512 MiB buffer */
    int n_threads;
    ak_isa isa;
} ak_peak;

/** Measure the ceilings with the context's thread count and ISA cap (takes about 2 s). */
AK_API ak_status ak_measure_peak(ak_ctx *ctx, ak_peak *out);

#ifdef __cplusplus
}
#endif
#endif /* ATTNKIT_H */
