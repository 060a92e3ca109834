// Scalar values of the compiled PE engine: CSL run-time types, IEEE f16/bf16/f32 rounding,
// the memory encoding of each type (sim/memory.py), and the DSD operations' element
// functions (sim/builtins_rt.DSD_OPS). Included by pe_engine.hpp.

#include <cmath>
#include <cstring>

// ---- value types (lower.py: TCODES) ----
enum TCode : int { kBool = 0, kI8, kU8, kI16, kU16, kI32, kU32, kF16, kF32, kBF16 };

inline int tc_bits(int t) {
  switch (t) {
    case kBool: case kI8: case kU8: return 8;
    case kI16: case kU16: case kF16: case kBF16: return 16;
    default: return 32;
  }
}
inline bool tc_float(int t) { return t == kF16 || t == kF32 || t == kBF16; }
inline bool tc_signed(int t) { return t == kI8 || t == kI16 || t == kI32; }
inline int tc_words(int t) { return tc_bits(t) > 16 ? 2 : 1; }

// IntT.wrap
inline int64_t wrap_int(int t, int64_t v) {
  const int bits = tc_bits(t);
  const uint64_t mask = bits == 64 ? ~uint64_t(0) : ((uint64_t(1) << bits) - 1);
  uint64_t u = static_cast<uint64_t>(v) & mask;
  if (tc_signed(t) && (u >> (bits - 1) & 1)) return static_cast<int64_t>(u) - (int64_t(1) << bits);
  return static_cast<int64_t>(u);
}

inline double half_to_double(uint16_t h) {
  // Exact: every binary16 value (NaN payloads included, as numpy widens them) is a float.
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t em = h & 0x7FFF;
  float f;
  if (em >= 0x7C00) {                       // inf / NaN
    const uint32_t b = sign | 0x7F800000u | ((em & 0x3FF) << 13);
    std::memcpy(&f, &b, 4);
  } else if (em >= 0x0400) {                // normal
    const uint32_t b = sign | ((em << 13) + 0x38000000u);
    std::memcpy(&f, &b, 4);
  } else {                                  // subnormal or zero: em * 2^-24
    f = static_cast<float>(em) * 5.9604644775390625e-08f;
    if (sign) f = -f;
  }
  return f;
}

// Round-to-nearest-even double -> binary16, as numpy's npy_double_to_half.
inline uint16_t double_to_half(double x) {
  uint64_t b;
  std::memcpy(&b, &x, 8);
  const uint16_t sign = static_cast<uint16_t>((b >> 48) & 0x8000);
  if (std::isnan(x)) {
    uint16_t m = static_cast<uint16_t>((b & 0xFFFFFFFFFFFFFULL) >> 42);
    return static_cast<uint16_t>(sign | 0x7C00 | (m ? m : 1));
  }
  const double a = std::fabs(x);
  if (a >= 65520.0) return static_cast<uint16_t>(sign | 0x7C00);
  if (a < 6.103515625e-05) {                       // subnormal (or zero): units of 2^-24
    const double r = std::nearbyint(a * 16777216.0);
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(r));
  }
  int e;
  std::frexp(a, &e);                               // a = f * 2^e, f in [0.5, 1)
  double r = std::nearbyint(std::ldexp(a, 11 - e));  // 11 significant bits, in [1024, 2048]
  int E = e - 1 + 15;
  if (r == 2048.0) { r = 1024.0; ++E; }
  if (E >= 31) return static_cast<uint16_t>(sign | 0x7C00);
  return static_cast<uint16_t>(sign | (E << 10) | (static_cast<int>(r) - 1024));
}

// values.round_float
inline double round_to(int t, double x) {
  if (t == kF32) return static_cast<double>(static_cast<float>(x));
  if (t == kF16) return half_to_double(double_to_half(x));
  if (t == kBF16) {
    float f = static_cast<float>(x);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if (!std::isnan(f)) u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000u;
    std::memcpy(&f, &u, 4);
    return f;
  }
  return x;
}

// A scalar on the VM stack; which member is live is known statically (lower.py types it).
union Scalar {
  int64_t i;
  double f;
};

// memory.encode / memory.decode
inline uint32_t encode_value(int t, Scalar v) {
  switch (t) {
    case kF32: { float f = static_cast<float>(v.f); uint32_t u; std::memcpy(&u, &f, 4); return u; }
    case kF16: return double_to_half(v.f);
    case kBF16: { float f = static_cast<float>(v.f); uint32_t u; std::memcpy(&u, &f, 4); return u >> 16; }
    case kBool: return v.i ? 1 : 0;
    default: {
      const int bits = tc_bits(t);
      return static_cast<uint32_t>(static_cast<uint64_t>(v.i) & ((uint64_t(1) << bits) - 1));
    }
  }
}
inline Scalar decode_value(int t, uint32_t bits) {
  Scalar s;
  switch (t) {
    case kF32: { float f; std::memcpy(&f, &bits, 4); s.f = f; break; }
    case kF16: s.f = half_to_double(static_cast<uint16_t>(bits & 0xFFFF)); break;
    case kBF16: { uint32_t u = (bits & 0xFFFF) << 16; float f; std::memcpy(&f, &u, 4); s.f = f; break; }
    case kBool: s.i = (bits & 0xFF) != 0; break;
    default: s.i = wrap_int(t, bits); break;
  }
  return s;
}

// The DSD operations with an element function here (op_apply, same order). Their types and
// SIMD widths come from Python (sim/builtins_rt.DSD_OPS, the one cost table) at construction.
const char* const kOpNames[] = {
    "fadds", "faddh", "fsubs", "fsubh", "fmuls", "fmulh", "fmaxs", "fmaxh", "fmacs", "fmach",
    "fmachs", "fmovs", "fmovh", "fnegs", "fnegh", "fabss", "fabsh", "fh2s", "fs2h", "mov16",
    "mov32", "add16", "sub16",
};
constexpr int kNumDsdOps = sizeof(kOpNames) / sizeof(kOpNames[0]);

struct OpInfo {
  std::string name;
  int dest, nsrc, src[3], simd2, simd3;
};

// The element function of each op (builtins_rt.DSD_OPS[...].fn); returns the value before the
// destination's encoding (which rounds it to the destination type).
inline Scalar op_apply(int op, const Scalar* v) {
  Scalar r;
  const auto r32 = [](double x) { return round_to(kF32, x); };
  const auto r16 = [](double x) { return round_to(kF16, x); };
  switch (op) {
    case 0: r.f = r32(v[0].f + v[1].f); break;
    case 1: r.f = r16(v[0].f + v[1].f); break;
    case 2: r.f = r32(v[0].f - v[1].f); break;
    case 3: r.f = r16(v[0].f - v[1].f); break;
    case 4: r.f = r32(v[0].f * v[1].f); break;
    case 5: r.f = r16(v[0].f * v[1].f); break;
    case 6: case 7: r.f = (v[0].f >= v[1].f || v[1].f != v[1].f) ? v[0].f : v[1].f; break;
    case 8: case 10: r.f = r32(v[0].f + r32(v[1].f * v[2].f)); break;
    case 9: r.f = r16(v[0].f + r16(v[1].f * v[2].f)); break;
    case 11: case 12: case 17: r.f = v[0].f; break;
    case 13: case 14: r.f = -v[0].f; break;
    case 15: case 16: r.f = std::fabs(v[0].f); break;
    case 18: r.f = r16(v[0].f); break;
    case 19: case 20: r.i = v[0].i; break;
    case 21: r.i = wrap_int(kI16, v[0].i + v[1].i); break;
    case 22: r.i = wrap_int(kI16, v[0].i - v[1].i); break;
    default: r.i = 0;
  }
  return r;
}
