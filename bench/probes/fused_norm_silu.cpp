// A probe, not part of the framework (bench/probes/fused_norm_silu.py builds and measures it; docs/BENCHMARKS.md, "The
// temporal convolution", has what it showed). GroupNorm -> per-sample scale / shift -> SiLU on channels-last CPU
// memory in as few passes over memory as the math allows: two forward (moments, then output), two backward.
// Every kernel sees x as (n, s, c) rows of c contiguous channels and per-sample coefficients a, b as (n, c):
//   forward   y = silu(x a + b)                         (a, b fold the norm, its affine and the scale / shift)
//   backward  g = dy silu'(x a + b); sums over s of g x and g; then dx = g c1 + x c2 + c3
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

namespace {

constexpr int64_t kBlock = 32;  // rows summed in float before the double accumulators

// e^x for x in [-87, 88], relative error ~1e-7; branch-free so loops over it vectorize.
__attribute__((always_inline)) inline float exp_approx(float x) {
  x = x < -87.f ? -87.f : (x > 88.f ? 88.f : x);
  const float n = (x * 1.44269504f + 12582912.f) - 12582912.f;   // round to nearest: 1.5 * 2^23 drops the fraction
  const float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(float));
  return p * scale;
}

__attribute__((always_inline)) inline float sigmoid(float z) { return 1.f / (1.f + exp_approx(-z)); }

// Per-thread partial sums over blocks of rows: out[k] += sum_rows f(row)[k] (two outputs).
template <typename F>
void channel_sums(int64_t n, int64_t s, int64_t c, F row, double* out1, double* out2) {
  // out1, out2: (n, c)
  const int threads = at::get_num_threads();
  std::vector<double> part(static_cast<size_t>(threads) * n * c * 2, 0.0);
  at::parallel_for(0, n * s, kBlock * 4, [&](int64_t r0, int64_t r1) {
    double* p = part.data() + static_cast<size_t>(at::get_thread_num()) * n * c * 2;
    std::vector<float> f1(c), f2(c);
    for (int64_t r = r0; r < r1;) {
      const int64_t i = r / s, end = std::min({r1, r + kBlock, (i + 1) * s});
      std::fill(f1.begin(), f1.end(), 0.f);
      std::fill(f2.begin(), f2.end(), 0.f);
      for (; r < end; ++r) row(i, r, f1.data(), f2.data());
      for (int64_t k = 0; k < c; ++k) {
        p[(i * c + k) * 2] += f1[k];
        p[(i * c + k) * 2 + 1] += f2[k];
      }
    }
  });
  for (int64_t j = 0; j < n * c; ++j) {
    double a = 0, b = 0;
    for (int t = 0; t < threads; ++t) {
      a += part[(static_cast<size_t>(t) * n * c + j) * 2];
      b += part[(static_cast<size_t>(t) * n * c + j) * 2 + 1];
    }
    out1[j] = a;
    out2[j] = b;
  }
}

CLONES void sum_row(const float* __restrict x, int64_t c, float* __restrict s1, float* __restrict s2) {
#pragma omp simd
  for (int64_t k = 0; k < c; ++k) {
    s1[k] += x[k];
    s2[k] += x[k] * x[k];
  }
}

CLONES void silu_row(const float* __restrict x, const float* __restrict a, const float* __restrict b, int64_t c,
                     float* __restrict y) {
#pragma omp simd
  for (int64_t k = 0; k < c; ++k) {
    const float z = x[k] * a[k] + b[k];
    y[k] = z * sigmoid(z);
  }
}

CLONES void grad_sum_row(const float* __restrict dy, const float* __restrict x, const float* __restrict a,
                         const float* __restrict b, int64_t c, float* __restrict sgx, float* __restrict sg) {
#pragma omp simd
  for (int64_t k = 0; k < c; ++k) {
    const float z = x[k] * a[k] + b[k], sig = sigmoid(z);
    const float g = dy[k] * sig * (1.f + z * (1.f - sig));
    sgx[k] += g * x[k];
    sg[k] += g;
  }
}

CLONES void grad_input_row(const float* __restrict dy, const float* __restrict x, const float* __restrict a,
                           const float* __restrict b, const float* __restrict c1, const float* __restrict c2,
                           const float* __restrict c3, int64_t c, float* __restrict dx) {
#pragma omp simd
  for (int64_t k = 0; k < c; ++k) {
    const float z = x[k] * a[k] + b[k], sig = sigmoid(z);
    const float g = dy[k] * sig * (1.f + z * (1.f - sig));
    dx[k] = g * c1[k] + x[k] * c2[k] + c3[k];
  }
}

void check(const torch::Tensor& t, int64_t dim, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.is_contiguous() && t.dim() == dim,
              name, ": expected a contiguous float32 CPU tensor of ", dim, " dims");
}

}  // namespace

// x (n s c) -> sums over s of x and x^2, (n c) each, float64
std::vector<torch::Tensor> moments(torch::Tensor x) {
  check(x, 3, "x");
  const int64_t n = x.size(0), s = x.size(1), c = x.size(2);
  auto opts = x.options().dtype(torch::kDouble);
  auto s1 = torch::empty({n, c}, opts), s2 = torch::empty({n, c}, opts);
  const float* X = x.data_ptr<float>();
  channel_sums(n, s, c, [&](int64_t, int64_t r, float* f1, float* f2) { sum_row(X + r * c, c, f1, f2); },
               s1.data_ptr<double>(), s2.data_ptr<double>());
  return {s1, s2};
}

// silu(x a + b): x (n s c), a b (n c)
torch::Tensor affine_silu(torch::Tensor x, torch::Tensor a, torch::Tensor b) {
  check(x, 3, "x"); check(a, 2, "a"); check(b, 2, "b");
  const int64_t n = x.size(0), s = x.size(1), c = x.size(2);
  auto y = torch::empty_like(x);
  const float *X = x.data_ptr<float>(), *A = a.data_ptr<float>(), *B = b.data_ptr<float>();
  float* Y = y.data_ptr<float>();
  at::parallel_for(0, n * s, kBlock * 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i = r / s;
      silu_row(X + r * c, A + i * c, B + i * c, c, Y + r * c);
    }
  });
  return y;
}

// g = dy silu'(x a + b): sums over s of g x and of g, (n c) each, float64
std::vector<torch::Tensor> affine_silu_grad_sums(torch::Tensor dy, torch::Tensor x, torch::Tensor a, torch::Tensor b) {
  check(dy, 3, "dy"); check(x, 3, "x"); check(a, 2, "a"); check(b, 2, "b");
  const int64_t n = x.size(0), s = x.size(1), c = x.size(2);
  auto opts = x.options().dtype(torch::kDouble);
  auto sgx = torch::empty({n, c}, opts), sg = torch::empty({n, c}, opts);
  const float *D = dy.data_ptr<float>(), *X = x.data_ptr<float>(), *A = a.data_ptr<float>(), *B = b.data_ptr<float>();
  channel_sums(n, s, c, [&](int64_t i, int64_t r, float* f1, float* f2) {
    grad_sum_row(D + r * c, X + r * c, A + i * c, B + i * c, c, f1, f2);
  }, sgx.data_ptr<double>(), sg.data_ptr<double>());
  return {sgx, sg};
}

// dx = g c1 + x c2 + c3 with g = dy silu'(x a + b); c1 c2 c3 (n c)
torch::Tensor affine_silu_grad_input(torch::Tensor dy, torch::Tensor x, torch::Tensor a, torch::Tensor b,
                                     torch::Tensor c1, torch::Tensor c2, torch::Tensor c3) {
  check(dy, 3, "dy"); check(x, 3, "x");
  for (auto* t : {&a, &b, &c1, &c2, &c3}) check(*t, 2, "coefficient");
  const int64_t n = x.size(0), s = x.size(1), c = x.size(2);
  auto dx = torch::empty_like(x);
  const float *D = dy.data_ptr<float>(), *X = x.data_ptr<float>(), *A = a.data_ptr<float>(), *B = b.data_ptr<float>();
  const float *C1 = c1.data_ptr<float>(), *C2 = c2.data_ptr<float>(), *C3 = c3.data_ptr<float>();
  float* DX = dx.data_ptr<float>();
  at::parallel_for(0, n * s, kBlock * 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i = r / s, o = i * c;
      grad_input_row(D + r * c, X + r * c, A + o, B + o, C1 + o, C2 + o, C3 + o, c, DX + r * c);
    }
  });
  return dx;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("moments", &moments);
  m.def("affine_silu", &affine_silu);
  m.def("affine_silu_grad_sums", &affine_silu_grad_sums);
  m.def("affine_silu_grad_input", &affine_silu_grad_input);
}
