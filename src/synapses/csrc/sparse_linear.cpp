// CPU kernels for a linear map stored as connections (synapses.native builds and loads this file).
//
// Dense operands are taken and returned *feature-major*: (features, batch), row-major, which
// is the (batch, features) tensor's transpose in memory. In that layout every stored weight
// reads and writes whole rows of samples, which vectorise, and nothing needs a transposed
// copy: a layer's feature-major output is the next layer's feature-major input, and its
// gradient comes back feature-major through element-wise layers in between. `transposed`
// converts a (batch, features) tensor once where a network starts.
//
// The weight is given in weight order (the layer's `weight` vector) together with a CSR
// index of one orientation: `crow` (rows + 1), `col` (n) and `order` (n: the weight-order
// position of each CSR entry).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

namespace {

// Samples are processed LANES at a time, as one vector (GCC/Clang vector extensions: one
// AVX-512 register of float32, two of float64, split further on narrower machines). The
// vectors are loaded from rows of any alignment, hence aligned(sizeof(T)).
constexpr int64_t LANES = 16;
template <typename T>
struct Lanes {
  typedef T type __attribute__((vector_size(LANES * sizeof(T)), aligned(sizeof(T))));
};

// The widest register the build targets: the accumulators of the products below are held in
// vectors of this size. A vector of LANES samples spans two AVX2 registers (four in
// float64), and eight such accumulators would not fit AVX2's sixteen: they spilled to memory
// on every stored weight, which made an x86-64-v3 build several times slower than an
// AVX-512 one at large layers.
#if defined(__AVX512F__)
constexpr int64_t REGISTER_BYTES = 64;
#else
constexpr int64_t REGISTER_BYTES = 32;
#endif
template <typename T>
struct Register {
  typedef T type __attribute__((vector_size(REGISTER_BYTES), aligned(sizeof(T))));
};
constexpr int ACCUMULATORS = 8;  // independent FMA chains in flight; at most half the registers

// How many stored weights ahead the gathered rows are prefetched, and from which size of the
// gathered operand on. The rows lie at random in the operand, so each is a cache miss once it
// outgrows the L2 cache, and the misses of successive weights queue one behind another unless
// announced early. Measured here against the same kernels without the hint, at one and two
// threads, batch 128: the weight gradient 7-8% faster at 4096 x 4096 (2 MB operand) and
// 24-27% at 250,000 x 250,000, epsilon 20 (16 MB); the forward products 8-11% faster there,
// but 4-13% slower at 20,000 x 20,000 (1.3 MB) and unchanged at 4096 x 4096 (1 MB), so they
// take the hint only where the operand is far beyond the L2 cache. No result depends on it.
constexpr int64_t PREFETCH_AHEAD = 16;
constexpr int64_t SAMPLED_PREFETCH_FROM_BYTES = 1 << 20;
constexpr int64_t PRODUCT_PREFETCH_FROM_BYTES = 8 << 20;

// Hint the cache lines of [p, p + BYTES) into every cache level (a hint: no result depends on it).
template <int64_t BYTES>
inline void prefetch_bytes(const void* p) {
  for (int64_t offset = 0; offset < BYTES; offset += 64) __builtin_prefetch(static_cast<const char*>(p) + offset, 0, 3);
}

// The sum of a vector's lanes, in log2(LANES) shuffle-and-add steps (a chain of scalar adds
// would cost LANES dependent additions per stored weight).
template <typename V>
inline auto lane_sum(V d) {
#if defined(__clang__)
  d += __builtin_shufflevector(d, d, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  d += __builtin_shufflevector(d, d, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
  d += __builtin_shufflevector(d, d, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  d += __builtin_shufflevector(d, d, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
#else
  typedef decltype(d[0] + 0) T;
  typedef std::conditional_t<sizeof(T) == 4, int32_t, int64_t> I;
  typedef I M __attribute__((vector_size(LANES * sizeof(I))));
  d += __builtin_shuffle(d, M{8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7});
  d += __builtin_shuffle(d, M{4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11});
  d += __builtin_shuffle(d, M{2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13});
  d += __builtin_shuffle(d, M{1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14});
#endif
  return d[0];
}

// Columns [b0, b0 + width) of the (features, batch) matrix `src`, as a (features, width)
// matrix: `src` itself when the batch is one chunk, else a packed copy in `buffer`. Read
// in place, a chunk's rows would lie a power-of-two stride apart, on a few cache sets.
template <typename T>
const T* chunk_of(const T* src, int64_t features, int64_t batch, int64_t b0, int64_t width, std::vector<T>& buffer) {
  if (width == batch) return src;
  buffer.resize(features * width);
  at::parallel_for(0, features, 256, [&](int64_t f_begin, int64_t f_end) {
    for (int64_t f = f_begin; f < f_end; ++f) std::copy(src + f * batch + b0, src + f * batch + b0 + width, buffer.data() + f * width);
  });
  return buffer.data();
}

// out[r, b] = sum over CSR row r of vals[k] * in[col[k], b] (+ bias[r]), for b in [0, batch);
// in: (n_in, batch), out: (n_rows, batch), vals in CSR order. Chunks of PER vectors of
// samples; a row's entries are dealt round-robin to SPLIT partial sums so that eight
// independent vector FMAs are in flight however narrow the chunk.
template <typename T, int PER, typename I>
void rows_times(const T* in, int64_t n_in, int64_t batch, const I* crow, const I* col, const T* vals,
                int64_t n_rows, const T* bias, T* out) {
  using V = typename Lanes<T>::type;
  constexpr int64_t WIDTH = PER * LANES;
  constexpr int SPLIT = PER >= 8 ? 1 : 8 / PER;
  std::vector<T> packed;
  const bool prefetch = n_in * WIDTH * static_cast<int64_t>(sizeof(T)) > PRODUCT_PREFETCH_FROM_BYTES;
  for (int64_t b0 = 0; b0 < batch; b0 += WIDTH) {
    const int64_t width = std::min(WIDTH, batch - b0), full = width / LANES;
    const T* chunk = chunk_of(in, n_in, batch, b0, width, packed);
    // Threads split the rows of the output.
    at::parallel_for(0, n_rows, 8, [&](int64_t r_begin, int64_t r_end) {
      const int64_t last = crow[r_end];  // prefetches stay within this thread's entries
      for (int64_t r = r_begin; r < r_end; ++r) {
        const T shift = bias ? bias[r] : T(0);
        T* dst = out + r * batch + b0;
        if (width == WIDTH) {  // the common case: a whole chunk, unrolled into registers
          // The chunk's samples in passes of GROUP registers, so that the SPLIT x GROUP
          // accumulators stay in registers; every sample's sum is the same sequence of
          // operations in any grouping, so the results do not depend on the register size.
          using R = typename Register<T>::type;
          constexpr int UNITS = WIDTH * sizeof(T) / REGISTER_BYTES;  // registers per chunk row
          // One pass where the split alone fills the accumulators (the narrowest chunks,
          // chosen for layers so wide that each gathered row comes from memory): a second
          // pass would fetch every row twice, which costs more than a few spilled registers.
          constexpr int FIT = ACCUMULATORS / SPLIT;
          constexpr int GROUP = FIT <= 1 || FIT > UNITS ? UNITS : FIT;
          static_assert(UNITS % GROUP == 0, "a chunk row is a whole number of passes");
          for (int u0 = 0; u0 < UNITS; u0 += GROUP) {
            R acc[SPLIT][GROUP] = {};
            int64_t k = crow[r];
            for (; k + SPLIT <= crow[r + 1]; k += SPLIT) {
              for (int s = 0; s < SPLIT; ++s) {
                if (prefetch && k + s + PREFETCH_AHEAD < last)
                  prefetch_bytes<GROUP * REGISTER_BYTES>(reinterpret_cast<const R*>(chunk + col[k + s + PREFETCH_AHEAD] * WIDTH) + u0);
                const T w = vals[k + s];
                const R* src = reinterpret_cast<const R*>(chunk + col[k + s] * WIDTH) + u0;
                for (int g = 0; g < GROUP; ++g) acc[s][g] += w * src[g];
              }
            }
            for (int s = 1; k < crow[r + 1]; ++k, ++s) {
              const T w = vals[k];
              const R* src = reinterpret_cast<const R*>(chunk + col[k] * WIDTH) + u0;
              for (int g = 0; g < GROUP; ++g) acc[s % SPLIT][g] += w * src[g];
            }
            for (int g = 0; g < GROUP; ++g) {
              R total = acc[0][g] + shift;
              for (int s = 1; s < SPLIT; ++s) total += acc[s][g];
              reinterpret_cast<R*>(dst)[u0 + g] = total;
            }
          }
          continue;
        }
        std::fill(dst, dst + width, shift);  // a partial chunk (the batch's last)
        for (int64_t k = crow[r]; k < crow[r + 1]; ++k) {
          const T w = vals[k];
          const T* src = chunk + col[k] * width;
          for (int64_t v = 0; v < full; ++v) reinterpret_cast<V*>(dst)[v] += w * reinterpret_cast<const V*>(src)[v];
          for (int64_t j = full * LANES; j < width; ++j) dst[j] += w * src[j];
        }
      }
    });
  }
}

// Sixteen vectors' lane sums as one vector, lane i the sum of d[BIT_REVERSED[i]]'s lanes, in
// four rounds of pairwise shuffles and adds (15 pairs in all, against 16 x 4 for one vector
// at a time): each round halves the vectors, a vector's half-sums ending beside its partner's.
constexpr int BIT_REVERSED[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};
#if defined(__clang__)
#define SHUFFLE16(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUFFLE16(a, b, ...) __builtin_shuffle(a, b, M{__VA_ARGS__})
#endif
template <typename V>
inline V sixteen_lane_sums(V* d) {
  typedef decltype(d[0][0] + 0) T;
  [[maybe_unused]] typedef std::conditional_t<sizeof(T) == 4, int32_t, int64_t> I;
  [[maybe_unused]] typedef I M __attribute__((vector_size(16 * sizeof(I))));
  static_assert(LANES == 16, "written for sixteen lanes");
  for (int i = 0; i < 8; ++i)
    d[i] = SHUFFLE16(d[2 * i], d[2 * i + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           SHUFFLE16(d[2 * i], d[2 * i + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  for (int i = 0; i < 4; ++i)
    d[i] = SHUFFLE16(d[2 * i], d[2 * i + 1], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27) +
           SHUFFLE16(d[2 * i], d[2 * i + 1], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
  for (int i = 0; i < 2; ++i)
    d[i] = SHUFFLE16(d[2 * i], d[2 * i + 1], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +
           SHUFFLE16(d[2 * i], d[2 * i + 1], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
  return SHUFFLE16(d[0], d[1], 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30) +
         SHUFFLE16(d[0], d[1], 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
}

// sums[k] += dot(rows[r_k], cols[col[k]]) for the CSR entries of rows [r_begin, r_end), one
// whole chunk of PER vectors of samples (rows: row r at rows + r * row_stride; cols: packed,
// PER * LANES apart), and row_sums[r] += the sum of row r's samples when row_sums is given
// (the bias gradient, from the registers the row is held in anyway): a row's samples stay
// in registers while its entries pass, and the dot products are reduced sixteen at a time
// into consecutive sums.
template <typename T, int PER, typename I>
void full_chunk_products(const T* rows, int64_t row_stride, const T* cols, int64_t r_begin, int64_t r_end,
                         const I* crow, const I* col, T* sums, T* row_sums, bool prefetch) {
  using V = typename Lanes<T>::type;
  constexpr int64_t WIDTH = PER * LANES;
  constexpr int PARTS = PER < 4 ? PER : 4;  // independent partial products per dot product
  V dots[LANES];
  int filled = 0;
  int64_t base = crow[r_begin];  // the entry of dots[BIT_REVERSED[0]]
  const int64_t last = crow[r_end];  // prefetches stay within these rows' entries
  for (int64_t r = r_begin; r < r_end; ++r) {
    if (crow[r] == crow[r + 1] && !row_sums) continue;
    V g[PER];
    for (int v = 0; v < PER; ++v) g[v] = reinterpret_cast<const V*>(rows + r * row_stride)[v];
    if (row_sums) {
      V total = g[0];
      for (int v = 1; v < PER; ++v) total += g[v];
      row_sums[r] += lane_sum(total);
    }
    for (int64_t k = crow[r]; k < crow[r + 1]; ++k) {
      if (prefetch && k + PREFETCH_AHEAD < last) prefetch_bytes<WIDTH * sizeof(T)>(cols + col[k + PREFETCH_AHEAD] * WIDTH);
      const V* x = reinterpret_cast<const V*>(cols + col[k] * WIDTH);
      V d[PARTS];
      for (int v = 0; v < PARTS; ++v) d[v] = g[v] * x[v];
      for (int v = PARTS; v < PER; ++v) d[v % PARTS] += g[v] * x[v];
      for (int step = PARTS / 2; step > 0; step /= 2)
        for (int v = 0; v < step; ++v) d[v] += d[v + step];
      dots[BIT_REVERSED[filled++]] = d[0];
      if (filled == LANES) {
        *reinterpret_cast<V*>(sums + base) += sixteen_lane_sums(dots);
        base += LANES;
        filled = 0;
      }
    }
  }
  for (int i = 0; i < filled; ++i) sums[base + i] += lane_sum(dots[BIT_REVERSED[i]]);
}

// grad[order[k]] = sum_b rows[r_k, b] * cols[col[k], b] for each CSR entry k of row r_k, and
// row_sums[r] = sum_b rows[r, b] when row_sums is given; rows: (n_rows, batch), cols:
// (n_cols, batch). Only cols is packed chunk by chunk: it is read at random, rows in order.
template <typename T, int PER, typename I>
void sampled_products(const T* rows, int64_t n_rows, const T* cols, int64_t n_cols, int64_t batch, const I* crow,
                      const I* col, const I* order, T* grad, T* row_sums) {
  using V = typename Lanes<T>::type;
  constexpr int64_t WIDTH = PER * LANES;
  std::vector<T> sums(crow[n_rows], T(0));  // in CSR order, scattered once at the end
  if (row_sums) std::fill(row_sums, row_sums + n_rows, T(0));
  std::vector<T> packed_cols;
  const bool prefetch = n_cols * WIDTH * static_cast<int64_t>(sizeof(T)) > SAMPLED_PREFETCH_FROM_BYTES;
  for (int64_t b0 = 0; b0 < batch; b0 += WIDTH) {
    const int64_t width = std::min(WIDTH, batch - b0), full = width / LANES;
    const T* row_chunk = rows + b0;
    const T* col_chunk = chunk_of(cols, n_cols, batch, b0, width, packed_cols);
    // Threads split the rows: no two write one entry.
    at::parallel_for(0, n_rows, 8, [&](int64_t r_begin, int64_t r_end) {
      if (width == WIDTH) {  // a whole chunk
        full_chunk_products<T, PER, I>(row_chunk, batch, col_chunk, r_begin, r_end, crow, col, sums.data(), row_sums,
                                       prefetch);
        return;
      }
      for (int64_t r = r_begin; r < r_end; ++r) {  // a partial chunk (the batch's last)
        const T* g = row_chunk + r * batch;
        if (row_sums) row_sums[r] += std::accumulate(g, g + width, T(0));
        for (int64_t k = crow[r]; k < crow[r + 1]; ++k) {
          const T* x = col_chunk + col[k] * width;
          V dot = V{};
          for (int64_t v = 0; v < full; ++v) dot += reinterpret_cast<const V*>(g)[v] * reinterpret_cast<const V*>(x)[v];
          T total = lane_sum(dot);
          for (int64_t j = full * LANES; j < width; ++j) total += g[j] * x[j];
          sums[k] += total;
        }
      }
    });
  }
  const int64_t n = crow[n_rows];
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) grad[order[k]] = sums[k];
  });
}

// Vectors of samples per chunk (1, 2, 4 or 8: 16 to 128 samples): `requested` / 16
// when given (tests, measurements), else the widest whose chunk of the randomly read operand
// (`features` rows) fits in `budget` bytes. Measured here (768 -> 3072, batch 2048, one
// thread): the input gradient, which reads 3072 features at random, ran 1.4x faster in
// chunks of 64 samples (768 KB) than of 128 (1.5 MB, most of the L2 cache); narrower chunks
// than needed only cost packing, so the forward (768 features) and the SDDMM keep 128.
int chunk_vectors(int64_t features, int64_t element_size, int64_t requested, int64_t budget) {
  if (requested) {
    TORCH_CHECK(requested == 16 || requested == 32 || requested == 64 || requested == 128,
                "synapses native kernels: the chunk width must be 16, 32, 64 or 128 samples, not ", requested);
    return static_cast<int>(requested / LANES);
  }
  int per = 8;
  while (per > 1 && features * per * LANES * element_size > budget) per /= 2;
  return per;
}
constexpr int64_t PRODUCT_CHUNK_BYTES = 1 << 20;  // rows_times: at most half the L2 cache
constexpr int64_t SAMPLED_CHUNK_BYTES = INT64_MAX;  // sampled_products: always the widest

// Calls body with std::integral_constant<int, per>: the chunk width as a compile-time constant.
template <typename Body>
void with_chunk_vectors(int per, Body&& body) {
  switch (per) {
    case 1: body(std::integral_constant<int, 1>{}); break;
    case 2: body(std::integral_constant<int, 2>{}); break;
    case 4: body(std::integral_constant<int, 4>{}); break;
    default: body(std::integral_constant<int, 8>{}); break;
  }
}

// Two-input lane shuffle with constant indices (GCC and Clang spell it differently).
#if defined(__clang__)
#define SHUFFLE8(a, b, i0, i1, i2, i3, i4, i5, i6, i7) __builtin_shufflevector(a, b, i0, i1, i2, i3, i4, i5, i6, i7)
#else
#define SHUFFLE8(a, b, i0, i1, i2, i3, i4, i5, i6, i7) __builtin_shuffle(a, b, M{i0, i1, i2, i3, i4, i5, i6, i7})
#endif

// One 8 x 8 tile: dst[c * dst_stride + r] = src[r * src_stride + c], in registers (three
// rounds of pairwise shuffles: 2 x 2, 4 x 4, then 8 x 8 blocks change places).
template <typename T>
inline void transpose_tile8(const T* src, int64_t src_stride, T* dst, int64_t dst_stride) {
  typedef T V __attribute__((vector_size(8 * sizeof(T)), aligned(sizeof(T))));
  [[maybe_unused]] typedef std::conditional_t<sizeof(T) == 4, int32_t, int64_t> I;
  [[maybe_unused]] typedef I M __attribute__((vector_size(8 * sizeof(I))));
  V a[8], b[8];
  for (int i = 0; i < 8; ++i) a[i] = *reinterpret_cast<const V*>(src + i * src_stride);
  for (int i = 0; i < 8; i += 2) {
    b[i] = SHUFFLE8(a[i], a[i + 1], 0, 8, 2, 10, 4, 12, 6, 14);
    b[i + 1] = SHUFFLE8(a[i], a[i + 1], 1, 9, 3, 11, 5, 13, 7, 15);
  }
  for (int i : {0, 1, 4, 5}) {
    a[i] = SHUFFLE8(b[i], b[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    a[i + 2] = SHUFFLE8(b[i], b[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int i = 0; i < 4; ++i) {
    b[i] = SHUFFLE8(a[i], a[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    b[i + 4] = SHUFFLE8(a[i], a[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
  for (int i = 0; i < 8; ++i) *reinterpret_cast<V*>(dst + i * dst_stride) = b[i];
}

// dst[c * rows + r] = src[r * cols + c]: 8 x 8 tiles in registers, the ragged edges by value.
template <typename T>
void transpose(const T* src, int64_t rows, int64_t cols, T* dst) {
  constexpr int64_t TILE = 8;
  const int64_t rows8 = rows / TILE * TILE, cols8 = cols / TILE * TILE;
  at::parallel_for(0, (cols + TILE - 1) / TILE, 8, [&](int64_t t_begin, int64_t t_end) {
    for (int64_t c0 = t_begin * TILE; c0 < std::min(t_end * TILE, cols); c0 += TILE) {
      if (c0 < cols8) {
        for (int64_t r0 = 0; r0 < rows8; r0 += TILE) transpose_tile8(src + r0 * cols + c0, cols, dst + c0 * rows + r0, rows);
        for (int64_t r = rows8; r < rows; ++r)
          for (int64_t c = c0; c < c0 + TILE; ++c) dst[c * rows + r] = src[r * cols + c];
      } else {
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = c0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
      }
    }
  });
}

void check_operand(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "synapses native kernels run on the CPU; ", name, " is on ", t.device());
  TORCH_CHECK(t.dim() == 2 && t.is_contiguous(), "synapses native kernels: ", name, " must be a contiguous (features, batch) matrix");
}

// Index values are not range-checked here (a pass over every connection per call): the
// indices come from synapses.sparse_ops.CSRIndex, built from checked connections.
void check_index(const torch::Tensor& crow, const torch::Tensor& col, const torch::Tensor& order) {
  const auto type = crow.scalar_type();
  for (const auto* t : {&crow, &col, &order}) {
    TORCH_CHECK((type == torch::kInt64 || type == torch::kInt32) && t->scalar_type() == type && t->is_contiguous() &&
                    t->device().is_cpu(),
                "synapses native kernels: index tensors must be contiguous, all int64 or all int32, on the CPU");
  }
  TORCH_CHECK(col.numel() == order.numel(), "synapses native kernels: col and order differ in length");
}

// Calls body with a value of the index tensors' element type (int32 where a layer's indices
// fit: half the index memory; int64 otherwise).
template <typename Body>
void with_index_type(const torch::Tensor& crow, Body&& body) {
  if (crow.scalar_type() == torch::kInt32) {
    body(int32_t{});
  } else {
    body(int64_t{});
  }
}

// (n_cols, batch) -> (rows, batch) through the CSR weight (rows = crow.numel() - 1); width:
// samples per chunk, 0 for the kernels' own choice.
torch::Tensor linear(const torch::Tensor& input, const torch::Tensor& weight, const c10::optional<torch::Tensor>& bias,
                     const torch::Tensor& crow, const torch::Tensor& col, const torch::Tensor& order, int64_t n_cols,
                     int64_t width) {
  check_operand(input, "input");
  check_index(crow, col, order);
  TORCH_CHECK(input.size(0) == n_cols, "synapses native kernels: input has ", input.size(0), " features, the weight ", n_cols);
  TORCH_CHECK(weight.device().is_cpu() && weight.dim() == 1 && weight.numel() == col.numel(), "synapses native kernels: weight must be (n,) on the CPU");
  TORCH_CHECK(input.scalar_type() == weight.scalar_type(), "synapses native kernels: input and weight dtypes differ");
  const int64_t n_rows = crow.numel() - 1, batch = input.size(1);
  auto out = torch::empty({n_rows, batch}, input.options());
  const auto vals = weight.index_select(0, order);  // CSR order
  torch::Tensor b;
  if (bias.has_value() && bias->defined()) {
    b = bias->contiguous();
    TORCH_CHECK(b.numel() == n_rows && b.scalar_type() == input.scalar_type(), "synapses native kernels: bias must be (rows,) of the input's dtype");
  }
  const int per = chunk_vectors(n_cols, input.element_size(), width, PRODUCT_CHUNK_BYTES);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "synapses_native_linear", [&] {
    with_chunk_vectors(per, [&](auto vectors) {
      with_index_type(crow, [&](auto index) {
        using I = decltype(index);
        rows_times<scalar_t, decltype(vectors)::value, I>(input.data_ptr<scalar_t>(), n_cols, batch, crow.data_ptr<I>(),
                                                          col.data_ptr<I>(), vals.data_ptr<scalar_t>(), n_rows,
                                                          b.defined() ? b.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>());
      });
    });
  });
  return out;
}

// (n,) in weight order: the sum over the batch of rows[r_k] * cols[c_k] for each connection;
// with row_sums also (rows,): the sum over the batch of each row (the bias gradient), else
// an undefined tensor. width: samples per chunk, 0 for the kernels' own choice.
std::tuple<torch::Tensor, torch::Tensor> sampled(const torch::Tensor& rows, const torch::Tensor& cols, const torch::Tensor& crow,
                                                 const torch::Tensor& col, const torch::Tensor& order, int64_t n_cols, bool row_sums,
                                                 int64_t width) {
  check_operand(rows, "rows");
  check_operand(cols, "cols");
  check_index(crow, col, order);
  TORCH_CHECK(cols.size(0) == n_cols, "synapses native kernels: cols has ", cols.size(0), " features, the weight ", n_cols);
  TORCH_CHECK(rows.size(1) == cols.size(1) && rows.size(0) == crow.numel() - 1, "synapses native kernels: operands do not match the index");
  TORCH_CHECK(rows.scalar_type() == cols.scalar_type(), "synapses native kernels: operand dtypes differ");
  auto grad = torch::empty({col.numel()}, rows.options());
  torch::Tensor sums = row_sums ? torch::empty({rows.size(0)}, rows.options()) : torch::Tensor();
  const int per = chunk_vectors(n_cols, rows.element_size(), width, SAMPLED_CHUNK_BYTES);
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "synapses_native_sampled", [&] {
    with_chunk_vectors(per, [&](auto vectors) {
      with_index_type(crow, [&](auto index) {
        using I = decltype(index);
        sampled_products<scalar_t, decltype(vectors)::value, I>(rows.data_ptr<scalar_t>(), rows.size(0), cols.data_ptr<scalar_t>(),
                                                                n_cols, rows.size(1), crow.data_ptr<I>(), col.data_ptr<I>(),
                                                                order.data_ptr<I>(), grad.data_ptr<scalar_t>(),
                                                                row_sums ? sums.data_ptr<scalar_t>() : nullptr);
      });
    });
  });
  return {grad, sums};
}

// A (rows, cols) tensor's transpose, contiguous: (cols, rows).
torch::Tensor transposed(const torch::Tensor& input) {
  TORCH_CHECK(input.device().is_cpu() && input.dim() == 2, "synapses native kernels: transposed takes a 2-d CPU tensor");
  const auto src = input.contiguous();
  auto out = torch::empty({src.size(1), src.size(0)}, src.options());
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "synapses_native_transposed", [&] {
    transpose<scalar_t>(src.data_ptr<scalar_t>(), src.size(0), src.size(1), out.data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("linear", &linear, "(in, batch) -> (rows, batch) through a CSR weight whose values are given in weight order",
        py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("crow"), py::arg("col"), py::arg("order"), py::arg("n_cols"),
        py::arg("width") = 0);
  m.def("sampled", &sampled, "the weight gradient at the connections, in weight order, and optionally the rows' sums (the bias gradient), from feature-major operands",
        py::arg("rows"), py::arg("cols"), py::arg("crow"), py::arg("col"), py::arg("order"), py::arg("n_cols"), py::arg("row_sums"),
        py::arg("width") = 0);
  m.def("transposed", &transposed, "a 2-d tensor's transpose, contiguous");
}
