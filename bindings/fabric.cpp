// waferscale._fabric: the C++ core of the fabric (router network) simulator.
//
// This is the same model as PyFabricCore in runtime/waferscale/sim/fabric.py, which is the
// definition of the semantics (read its docstring and docs/fabric-model.md first). The two must
// agree event for event, including error messages; simulator_tests/sim/test_fabric.py runs them
// in lockstep. Only routers holding wavelets are visited in a cycle.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <queue>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

constexpr int kColors = 24;
constexpr int kDirs = 5;
constexpr int kSlots = kDirs * kColors;  // slot = direction * 24 + color
constexpr int kRamp = 0, kNorth = 1, kEast = 2, kSouth = 3, kWest = 4;
constexpr int64_t kMaxPayload = 0xFFFFFFFFLL;
const char* const kNames[kDirs] = {"RAMP", "NORTH", "EAST", "SOUTH", "WEST"};
constexpr int kOpposite[kDirs] = {0, 3, 4, 1, 2};
constexpr int kDx[kDirs] = {0, 0, 1, 0, -1};
constexpr int kDy[kDirs] = {0, -1, 0, 1, 0};

enum class ErrorKind { kBase = 0, kConfig = 1, kRouting = 2 };

struct FabricException : std::runtime_error {
  ErrorKind kind;
  FabricException(ErrorKind k, const std::string& msg) : std::runtime_error(msg), kind(k) {}
};

// The Python exception classes (FabricError, FabricConfigError, FabricRoutingError), handed
// over by fabric.py. Deliberately leaked references: they must outlive module teardown.
PyObject* g_error_types[3] = {nullptr, nullptr, nullptr};

[[noreturn]] void fail(ErrorKind kind, const std::string& msg) { throw FabricException(kind, msg); }

std::string pe_name(int x, int y) {
  return "PE(" + std::to_string(x) + "," + std::to_string(y) + ")";
}

std::string format_mask(int mask) {
  std::string s = "{";
  bool first = true;
  for (int d = 0; d < kDirs; ++d) {
    if (!(mask >> d & 1)) continue;
    if (!first) s += ", ";
    s += kNames[d];
    first = false;
  }
  return s + "}";
}

struct Wavelet {
  uint32_t payload;
  uint8_t color;
  uint8_t ctrl;
  int64_t ready;   // first cycle it can leave its buffer (or be read from its input queue)
};

// A bounded FIFO whose storage is a window of a shared pool (an index, so it stays valid as
// the pool grows when routes allocate more buffers). cap == 0: not allocated yet.
struct Ring {
  uint32_t base;
  uint16_t cap;
  uint16_t head;
  uint16_t count;
  uint16_t hw;  // high-water mark
};

// The per-router state read every cycle, packed into two cache lines.
struct Router {
  uint8_t rx[kColors];
  uint8_t tx[kColors];
  int8_t color_iq[kColors];  // input queue bound to each color, -1 none
  int32_t nbr[kDirs];        // router index per direction, -1 off the grid (always -1 for RAMP)
  uint16_t rr;
  uint16_t oq_rr;
  uint32_t oq_nonempty;      // bitmask of output queues holding wavelets
  uint32_t load;             // wavelets in router buffers + output queues + on host links
  uint32_t valid_colors;     // colors whose tx passed check_destinations under valid_epoch
  uint32_t valid_epoch;
  int16_t x, y;
  uint8_t sinks;
  uint8_t host_used;         // host links (by direction bit) used in the current cycle
  uint32_t teardown;         // bitmask of colors in teardown mode
  bool queue_wait;           // PyFabricCore._PE.queue_wait
  unsigned __int128 nonempty;  // bit per slot whose buffer holds wavelets
};

inline int ctz128(unsigned __int128 v) {
  const uint64_t lo = static_cast<uint64_t>(v);
  return lo ? __builtin_ctzll(lo) : 64 + __builtin_ctzll(static_cast<uint64_t>(v >> 64));
}

// Per (router, color): position 0 (set_route), the directions some position accepts, and
// the switch positions (PyFabricCore._PE.sw: -1 keeps position 0's rx/tx; both -1: none).
struct ColorCfg {
  uint8_t base_rx = 0, base_tx = 0, accept = 0;
  bool has_sw = false;
  int8_t pos[6] = {-1, -1, -1, -1, -1, -1};
  uint8_t cur = 0, ring = 0, pop = 0;
  int32_t filt_lo = -1, filt_hi = -1;   // range filter of data wavelets to the CE, -1 none
  uint8_t swap = 0;                      // color swap: bit 0 EAST/WEST, bit 1 NORTH/SOUTH
  // counter filter (PyFabricCore.set_counter_filter): limit < 0 none
  int32_t cf_counter = 0, cf_max = 0, cf_limit = -1;
  uint8_t cf_data = 0, cf_control = 0;
};

constexpr int kCmdAdv = 1, kCmdRst = 2, kCmdTeardown = 3;
constexpr int kPopAlways = 1, kPopOnAdvance = 2;
constexpr int kCmdSlotBits[8][3] = {{22, 23, 24}, {25, 26, 27}, {28, 29, 0}, {1, 2, 3},
                                    {4, 5, 6},    {7, 8, 9},    {10, 11, 12}, {13, 14, 15}};

// fabric.control_pop: slot 0 popped, the later slots move down, slot 7 = NOP with NOCE.
inline uint32_t control_pop(uint32_t p) {
  int v[8];
  for (int k = 0; k < 8; ++k) {
    v[k] = 0;
    for (int b = 0; b < 3; ++b) v[k] |= static_cast<int>((p >> kCmdSlotBits[k][b]) & 1) << b;
  }
  for (int k = 0; k < 7; ++k) v[k] = v[k + 1];
  v[7] = 0b100;
  for (int k = 0; k < 8; ++k)
    for (int b = 0; b < 3; ++b) {
      const uint32_t bit = 1u << kCmdSlotBits[k][b];
      p = (v[k] >> b & 1) ? (p | bit) : (p & ~bit);
    }
  return p;
}

struct Move {
  uint32_t router;
  uint16_t slot;
  uint8_t tx;
};

struct CeMove {
  uint32_t router;
  uint32_t queue;
};

struct Injection {
  uint32_t router;
  uint16_t slot;
  Wavelet w;
};

struct Pointer {
  uint32_t router;
  uint16_t rr, oq_rr;
};

struct Delivery {
  int64_t cycle;
  int x, y, queue, color;
  uint32_t payload;
  bool ctrl;
};

struct SinkRecord {
  int64_t cycle;
  int color;
  uint32_t payload;
  bool ctrl;
};

constexpr int64_t kMaxDepth = 65535;
constexpr int64_t kMaxLatency = 64;

class Core {
 public:
  Core(int64_t width, int64_t height, std::vector<int64_t> iq_depths,
       std::vector<int64_t> oq_depths, int64_t buffer_depth, bool record_deliveries,
       int64_t hop_latency, int64_t ce_to_router_latency, int64_t router_to_ce_latency)
      : record_(record_deliveries) {
    if (width < 1 || height < 1)
      fail(ErrorKind::kConfig, "grid must be at least 1x1, got " + std::to_string(width) + "x" +
                                   std::to_string(height));
    if (width > 32767 || height > 32767) fail(ErrorKind::kConfig, "grid sides must be <= 32767");
    if (iq_depths.empty() || oq_depths.empty() || iq_depths.size() > 32 || oq_depths.size() > 32)
      fail(ErrorKind::kConfig, "queue counts must be in 1..32");
    for (int64_t d : iq_depths)
      if (d < 1 || d > kMaxDepth) fail(ErrorKind::kConfig, "queue depths must be in 1..65535");
    for (int64_t d : oq_depths)
      if (d < 1 || d > kMaxDepth) fail(ErrorKind::kConfig, "queue depths must be in 1..65535");
    if (buffer_depth < 1 || buffer_depth > kMaxDepth)
      fail(ErrorKind::kConfig, "router buffer depth must be in 1..65535");
    for (int64_t l : {hop_latency, ce_to_router_latency, router_to_ce_latency})
      if (l < 1 || l > kMaxLatency) fail(ErrorKind::kConfig, "latencies must be in 1..64");
    hop_ = hop_latency;
    ramp_out_ = ce_to_router_latency;
    ramp_in_ = router_to_ce_latency;
    width_ = static_cast<int>(width);
    height_ = static_cast<int>(height);
    // Capacities include each latency's pipeline registers (PyFabricCore).
    depth_ = static_cast<uint16_t>(buffer_depth + hop_latency - 1);
    ramp_depth_ = static_cast<uint16_t>(buffer_depth + ce_to_router_latency - 1);
    n_iq_ = static_cast<int>(iq_depths.size());
    n_oq_ = static_cast<int>(oq_depths.size());
    const size_t n = static_cast<size_t>(width_) * height_;
    routers_.resize(n);
    for (int y = 0; y < height_; ++y) {
      for (int x = 0; x < width_; ++x) {
        Router& r = routers_[static_cast<size_t>(y) * width_ + x];
        r = Router{};
        r.x = static_cast<int16_t>(x);
        r.y = static_cast<int16_t>(y);
        for (int d = 0; d < kDirs; ++d) {
          const int nx = x + kDx[d], ny = y + kDy[d];
          r.nbr[d] = (d == kRamp || nx < 0 || ny < 0 || nx >= width_ || ny >= height_)
                         ? -1 : ny * width_ + nx;
        }
        for (int c = 0; c < kColors; ++c) r.color_iq[c] = -1;
      }
    }
    slot_rings_.assign(n * kSlots, Ring{0, 0, 0, 0, 0});
    cfg_.assign(n * kColors, ColorCfg{});
    iq_rings_.reserve(n * n_iq_);
    oq_rings_.reserve(n * n_oq_);
    size_t queue_cap = 0;   // the queues' pool, allocated once (a whole wafer has 893k routers)
    for (int64_t d : iq_depths) queue_cap += static_cast<size_t>(d + router_to_ce_latency - 1);
    for (int64_t d : oq_depths) queue_cap += static_cast<size_t>(d);
    pool_.reserve(n * queue_cap);
    for (size_t i = 0; i < n; ++i) {
      for (int64_t d : iq_depths)
        iq_rings_.push_back(new_ring(static_cast<uint16_t>(d + router_to_ce_latency - 1)));
      for (int64_t d : oq_depths) oq_rings_.push_back(new_ring(static_cast<uint16_t>(d)));
    }
    iq_color_.assign(n * n_iq_, -1);
    active_.assign((n + 63) / 64, 0);
    link_out_.assign(n * kDirs, 0);
    link_in_.assign(n * kDirs, 0);
    stall_cycles_.assign(n, 0);
    stalled_.assign(n, 0);
  }

  // ---- configuration (every change bumps epoch_, invalidating the route-check cache) ----

  void set_route(int64_t x, int64_t y, int64_t color, int64_t rx, int64_t tx) {
    Router& r = at(x, y);
    check_color(color);
    for (int64_t mask : {rx, tx})
      if (mask < 0 || mask >= 32)
        fail(ErrorKind::kConfig, "route mask " + std::to_string(mask) + " out of range 0..31");
    for (int d = 1; d < kDirs; ++d) {
      if ((tx >> d & 1) && r.nbr[d] < 0 && !(r.sinks >> d & 1))
        fail(ErrorKind::kConfig, "route of color " + std::to_string(color) + " at " +
                                     pe_name(r.x, r.y) + " sends " + kNames[d] +
                                     " off the grid (no edge sink enabled for " +
                                     pe_name(r.x, r.y) + " " + kNames[d] + ")");
    }
    ColorCfg& c = cfg(index_of(r), color);
    c.base_rx = static_cast<uint8_t>(rx);
    c.base_tx = static_cast<uint8_t>(tx);
    refresh(index_of(r), static_cast<int>(color));
  }

  // The configuration of `color` at router i.
  ColorCfg& cfg(int64_t i, int64_t color) { return cfg_[static_cast<size_t>(i) * kColors + color]; }
  const ColorCfg& cfg(int64_t i, int64_t color) const {
    return cfg_[static_cast<size_t>(i) * kColors + color];
  }

  // PyFabricCore._refresh: the route in effect, the accepted directions, the buffers.
  void refresh(int i, int color) {
    Router& r = routers_[i];
    const ColorCfg& c = cfg(i, color);
    int rx = c.base_rx, tx = c.base_tx, accept = rx;
    if (c.has_sw) {   // cumulative positions (PyFabricCore._refresh)
      int crx = rx, ctx = tx;
      for (int k = 0; k < 3; ++k) {
        const int prx = c.pos[2 * k], ptx = c.pos[2 * k + 1];
        if (prx < 0 && ptx < 0) continue;
        crx = prx < 0 ? crx : prx;
        ctx = ptx < 0 ? ctx : ptx;
        accept |= crx;
        if (k + 1 == c.cur) {
          rx = crx;
          tx = ctx;
        }
      }
    }
    r.rx[color] = static_cast<uint8_t>(rx);
    r.tx[color] = static_cast<uint8_t>(tx);
    cfg(i, color).accept = static_cast<uint8_t>(accept);
    const int need = (r.teardown >> color & 1) ? 31 : accept;
    for (int d = 0; d < kDirs; ++d) {
      Ring& ring = slot_rings_[static_cast<size_t>(i) * kSlots + d * kColors + color];
      if ((need >> d & 1) && !ring.cap) ring = new_ring(d == kRamp ? ramp_depth_ : depth_);
    }
    ++epoch_;
  }

  // PyFabricCore._out_color: the color a wavelet leaves through output o with.
  int out_color(const Router& r, int color, int o) const {
    const int sw = cfg(index_of(r), color).swap;
    if (sw && (((sw & 1) && (o == kEast || o == kWest)) || ((sw & 2) && (o == kNorth || o == kSouth))))
      return color ^ 1;
    return color;
  }

  int accepts(int i, int color) const {
    return (routers_[i].teardown >> color & 1) ? 31
                                               : cfg(i, color).accept;
  }

  void set_switches(int64_t x, int64_t y, int64_t color, std::vector<int64_t> positions,
                    int64_t current, bool ring_mode, int64_t pop_mode) {
    Router& r = at(x, y);
    check_color(color);
    if (positions.size() != 6) fail(ErrorKind::kConfig, "switch positions must be 6 masks in -1..31");
    for (int64_t m : positions)
      if (m < -1 || m >= 32) fail(ErrorKind::kConfig, "switch positions must be 6 masks in -1..31");
    if (current < 0 || current > 3)
      fail(ErrorKind::kConfig, "switch position " + std::to_string(current) + " out of range 0..3");
    if (pop_mode < 0 || pop_mode > 2)
      fail(ErrorKind::kConfig, "pop mode " + std::to_string(pop_mode) + " out of range 0..2");
    if (current && positions[2 * current - 2] < 0 && positions[2 * current - 1] < 0)
      fail(ErrorKind::kConfig, "switch position " + std::to_string(current) + " of color " +
                                   std::to_string(color) + " at " + pe_name(r.x, r.y) +
                                   " is not defined");
    for (int k = 0; k < 3; ++k) {
      const int64_t ptx = positions[2 * k + 1];
      for (int d = 1; d < kDirs; ++d)
        if (ptx > 0 && (ptx >> d & 1) && r.nbr[d] < 0 && !(r.sinks >> d & 1))
          fail(ErrorKind::kConfig, "switch position " + std::to_string(k + 1) + " of color " +
                                       std::to_string(color) + " at " + pe_name(r.x, r.y) +
                                       " sends " + kNames[d] + " off the grid (no edge sink enabled)");
    }
    const int i = index_of(r);
    ColorCfg& c = cfg(i, color);
    c.has_sw = true;
    for (int k = 0; k < 6; ++k) c.pos[k] = static_cast<int8_t>(positions[k]);
    c.cur = static_cast<uint8_t>(current);
    c.ring = ring_mode ? 1 : 0;
    c.pop = static_cast<uint8_t>(pop_mode);
    refresh(i, static_cast<int>(color));
  }

  // PyFabricCore.router_config: <tile_config>'s run-time router changes.
  void router_config(int64_t x, int64_t y, int64_t kind, int64_t color, int64_t value) {
    Router& r = at(x, y);
    check_color(color);
    if (kind == 0) {
      set_route(x, y, color, value & 31, value >> 5);
      return;
    }
    if (kind == 10) {
      rebind_input_queue(index_of(r), static_cast<int>(value & 0xFF), static_cast<int>(color),
                         (value >> 8 & 1) != 0);
      return;
    }
    if (kind == 9) {
      set_teardown(x, y, color, false);
      return;
    }
    if (kind < 1 || kind > 8)
      fail(ErrorKind::kConfig, "router configuration kind " + std::to_string(kind) +
                                   " out of range 0..9");
    const ColorCfg& c = cfg(index_of(r), color);
    std::vector<int64_t> pos(6, -1);
    int64_t cur = 0;
    bool ring = false;
    int64_t pop = 0;
    if (c.has_sw) {
      for (int k = 0; k < 6; ++k) pos[k] = c.pos[k];
      cur = c.cur;
      ring = c.ring != 0;
      pop = c.pop;
    }
    if (kind == 1) {
      cur = 0;
    } else if (kind == 2) {
      if (cur)
        fail(ErrorKind::kConfig, "switch position " + std::to_string(cur) + " of color " +
                                     std::to_string(color) + " at " + pe_name(r.x, r.y) +
                                     " is the current one and cannot be invalidated (clear "
                                     "the current position first)");
      for (auto& m : pos) m = -1;
    } else {
      pos[kind <= 5 ? (kind - 3) * 2 : (kind - 6) * 2 + 1] = value;
    }
    set_switches(x, y, color, pos, cur, ring, pop);
  }

  // PyFabricCore._rebind_input_queue.
  void rebind_input_queue(int i, int q, int color, bool filter_enable) {
    Router& r = routers_[i];
    check_queue(true, q);
    const ColorCfg& c = cfg(i, color);
    if (!filter_enable && (c.filt_lo >= 0 || c.cf_limit >= 0))
      fail(ErrorKind::kConfig, "input queue " + std::to_string(q) + " of " + pe_name(r.x, r.y) +
                                   " takes color " + std::to_string(color) +
                                   " with its filter disabled, which is not supported by "
                                   "waferscale yet");
    const int old = r.color_iq[color];
    if (old == q) return;
    if (old >= 0 && old < 8)
      fail(ErrorKind::kConfig, "color " + std::to_string(color) +
                                   " is already bound to input queue " + std::to_string(old) +
                                   " of " + pe_name(r.x, r.y));
    int8_t& bound = iq_color_[static_cast<size_t>(i) * n_iq_ + q];
    if (bound >= 0) {
      r.color_iq[bound] = -1;
      bound = -1;
    }
    if (old >= 0) {
      Ring& from = iq_rings_[static_cast<size_t>(i) * n_iq_ + old];
      Ring& to = iq_rings_[static_cast<size_t>(i) * n_iq_ + q];
      if (to.count + from.count > to.cap)
        fail(ErrorKind::kConfig, "input queue " + std::to_string(q) + " of " + pe_name(r.x, r.y) +
                                     " cannot take the " + std::to_string(from.count) +
                                     " wavelet(s) of color " + std::to_string(color) +
                                     " waiting for it");
      while (from.count) push(to, pop(from));
      iq_color_[static_cast<size_t>(i) * n_iq_ + old] = -1;
    }
    bound = static_cast<int8_t>(color);
    r.color_iq[color] = static_cast<int8_t>(q);
    ++epoch_;
  }

  py::tuple switch_state(int64_t x, int64_t y, int64_t color) {
    Router& r = at(x, y);
    check_color(color);
    const ColorCfg& c = cfg(index_of(r), color);
    if (!c.has_sw) return py::make_tuple(-1, -1, -1, -1, -1, -1, 0, 0, 0);
    return py::make_tuple(c.pos[0], c.pos[1], c.pos[2], c.pos[3], c.pos[4], c.pos[5], c.cur,
                          c.ring, c.pop);
  }

  void set_teardown(int64_t x, int64_t y, int64_t color, bool on) {
    Router& r = at(x, y);
    check_color(color);
    if (on)
      r.teardown |= 1u << color;
    else
      r.teardown &= ~(1u << color);
    refresh(index_of(r), static_cast<int>(color));
  }

  void set_filter(int64_t x, int64_t y, int64_t color, int64_t lo, int64_t hi) {
    Router& r = at(x, y);
    check_color(color);
    ColorCfg& c = cfg(index_of(r), color);
    if (lo < 0) {
      c.filt_lo = c.filt_hi = -1;
    } else if (lo > 0xFFFF || hi < 0 || hi > 0xFFFF) {
      fail(ErrorKind::kConfig, "filter range " + std::to_string(lo) + ".." + std::to_string(hi) +
                                   " out of range 0..65535");
    } else {
      c.filt_lo = static_cast<int32_t>(lo);
      c.filt_hi = static_cast<int32_t>(hi);
    }
  }

  void set_counter_filter(int64_t x, int64_t y, int64_t color, int64_t init, int64_t max_counter,
                          int64_t limit, bool count_data, bool count_control) {
    Router& r = at(x, y);
    check_color(color);
    ColorCfg& c = cfg(index_of(r), color);
    if (limit < 0) {
      c.cf_limit = -1;
      return;
    }
    for (int64_t v : {init, max_counter, limit})
      if (v < 0 || v > 0xFFFF)
        fail(ErrorKind::kConfig, "counter filter value " + std::to_string(v) +
                                     " out of range 0..65535");
    c.cf_counter = static_cast<int32_t>(init);
    c.cf_max = static_cast<int32_t>(max_counter);
    c.cf_limit = static_cast<int32_t>(limit);
    c.cf_data = count_data;
    c.cf_control = count_control;
  }

  void set_queue_wait(int64_t x, int64_t y, bool on) {
    at(x, y).queue_wait = on;
    ++epoch_;
  }

  void set_color_swap(int64_t x, int64_t y, int64_t color, int64_t mask) {
    Router& r = at(x, y);
    check_color(color);
    if (mask < 0 || mask > 3)
      fail(ErrorKind::kConfig, "color swap mask " + std::to_string(mask) + " out of range 0..3");
    cfg(index_of(r), color).swap = static_cast<uint8_t>(mask);
    ++epoch_;
  }

  bool in_teardown(int64_t x, int64_t y, int64_t color) {
    Router& r = at(x, y);
    check_color(color);
    return r.teardown >> color & 1;
  }

  py::list take_teardowns() {
    py::list out;
    for (const auto& [t, i, c] : teardowns_)
      out.append(py::make_tuple(t, int(routers_[i].x), int(routers_[i].y), c));
    teardowns_.clear();
    return out;
  }
  // (cycle, router, color) of each teardown command executed: the engine's view.
  std::vector<std::tuple<int64_t, int, int>>& teardown_events() { return teardowns_; }

  std::pair<int, int> get_route(int64_t x, int64_t y, int64_t color) {
    Router& r = at(x, y);
    check_color(color);
    const ColorCfg& c = cfg(index_of(r), color);
    return {c.base_rx, c.base_tx};
  }

  void enable_edge_sink(int64_t x, int64_t y, int64_t direction) {
    Router& r = at(x, y);
    edge_port(r, direction, "enable_edge_sink");
    r.sinks |= static_cast<uint8_t>(1 << direction);
    sinks_.try_emplace(index_of(r) * kDirs + static_cast<int>(direction));
  }

  py::list edge_sink_take(int64_t x, int64_t y, int64_t direction) {
    Router& r = at(x, y);
    check_direction(direction);
    auto it = sinks_.find(index_of(r) * kDirs + static_cast<int>(direction));
    if (it == sinks_.end())
      fail(ErrorKind::kConfig, "no edge sink enabled for " + pe_name(r.x, r.y) + " " +
                                   kNames[direction]);
    py::list out;
    for (const auto& rec : it->second)
      out.append(py::make_tuple(rec.cycle, rec.color, rec.payload, rec.ctrl));
    it->second.clear();
    return out;
  }

  void bind_input_queue(int64_t x, int64_t y, int64_t q, int64_t color) {
    Router& r = at(x, y);
    check_queue(true, q);
    check_color(color);
    int8_t& bound = iq_color_[static_cast<size_t>(index_of(r)) * n_iq_ + q];
    if (bound == color) return;
    if (bound >= 0)
      fail(ErrorKind::kConfig, "input queue " + std::to_string(q) + " of " + pe_name(r.x, r.y) +
                                   " is already bound to color " + std::to_string(bound) +
                                   "; unbind it first");
    if (r.color_iq[color] >= 0)
      fail(ErrorKind::kConfig, "color " + std::to_string(color) +
                                   " is already bound to input queue " +
                                   std::to_string(r.color_iq[color]) + " of " + pe_name(r.x, r.y));
    bound = static_cast<int8_t>(color);
    r.color_iq[color] = static_cast<int8_t>(q);
    ++epoch_;
  }

  void unbind_input_queue(int64_t x, int64_t y, int64_t q) {
    Router& r = at(x, y);
    check_queue(true, q);
    int8_t& bound = iq_color_[static_cast<size_t>(index_of(r)) * n_iq_ + q];
    if (bound >= 0) {
      r.color_iq[bound] = -1;
      bound = -1;
    }
    ++epoch_;
  }

  int input_queue_color(int64_t x, int64_t y, int64_t q) {
    Router& r = at(x, y);
    check_queue(true, q);
    return iq_color_[static_cast<size_t>(index_of(r)) * n_iq_ + q];
  }

  // ---- CE side and host side ----

  bool ce_send(int64_t x, int64_t y, int64_t oq, int64_t color, int64_t payload, bool ctrl) {
    Router& r = at(x, y);
    check_queue(false, oq);
    check_color(color);
    check_payload(payload);
    const int i = index_of(r);
    Ring& ring = oq_rings_[static_cast<size_t>(i) * n_oq_ + oq];
    if (ring.count >= ring.cap) return false;
    push(ring, Wavelet{static_cast<uint32_t>(payload), static_cast<uint8_t>(color), ctrl, 0});
    r.oq_nonempty |= 1u << oq;
    add_load(r, i);
    return true;
  }

  py::object ce_recv(int64_t x, int64_t y, int64_t iq) {
    Ring& ring = iq_at(x, y, iq);
    if (!readable(ring)) return py::none();
    const Wavelet w = pop(ring);
    return py::make_tuple(w.payload, static_cast<bool>(w.ctrl));
  }

  py::object ce_peek(int64_t x, int64_t y, int64_t iq) {
    Ring& ring = iq_at(x, y, iq);
    if (!readable(ring)) return py::none();
    const Wavelet& w = front(ring);
    return py::make_tuple(w.payload, static_cast<bool>(w.ctrl));
  }

  int iq_count(int64_t x, int64_t y, int64_t iq) { return readable(iq_at(x, y, iq)); }

  int oq_count(int64_t x, int64_t y, int64_t oq) { return oq_at(x, y, oq).count; }

  int oq_free(int64_t x, int64_t y, int64_t oq) {
    const Ring& ring = oq_at(x, y, oq);
    return ring.cap - ring.count;
  }

  bool inject(int64_t x, int64_t y, int64_t direction, int64_t color, int64_t payload, bool ctrl) {
    Router& r = at(x, y);
    edge_port(r, direction, "inject");
    check_color(color);
    check_payload(payload);
    if (!(accepts(index_of(r), static_cast<int>(color)) >> direction & 1))
      fail(ErrorKind::kRouting, "cycle " + std::to_string(cycle_) + ": wavelet injected into " +
                                    pe_name(r.x, r.y) + " from " + kNames[direction] +
                                    " on color " + std::to_string(color) + ", but color " +
                                    std::to_string(color) + " there accepts rx=" +
                                    format_mask(r.rx[color]));
    const int i = index_of(r);
    const int slot = static_cast<int>(direction) * kColors + static_cast<int>(color);
    if ((r.host_used >> direction & 1) ||
        slot_rings_[static_cast<size_t>(i) * kSlots + slot].count >= depth_)
      return false;
    // Crosses the host link during the next cycle and lands at its end (see PyFabricCore).
    if (!r.host_used) host_used_list_.push_back(static_cast<uint32_t>(i));
    r.host_used |= static_cast<uint8_t>(1 << direction);
    injections_.push_back(Injection{static_cast<uint32_t>(i), static_cast<uint16_t>(slot),
                                    Wavelet{static_cast<uint32_t>(payload),
                                            static_cast<uint8_t>(color), ctrl, 0}});
    add_load(r, i);
    ++link_in_[static_cast<size_t>(i) * kDirs + direction];
    ++hops_;
    return true;
  }

  // ---- time ----

  int64_t cycle() const { return cycle_; }
  int64_t in_flight() const { return in_flight_; }
  bool idle() const { return in_flight_ == 0; }

  int64_t step(int64_t n) {
    if (n < 0) fail(ErrorKind::kConfig, "step count must be >= 0, got " + std::to_string(n));
    int64_t done = 0;
    while (done < n && in_flight_) {
      run_cycle();
      ++done;
    }
    return done;
  }

  void advance_clock(int64_t n) {
    if (n < 0)
      fail(ErrorKind::kConfig, "advance_clock count must be >= 0, got " + std::to_string(n));
    if (in_flight_)
      fail(ErrorKind::kBase, "advance_clock needs an idle fabric; " + std::to_string(in_flight_) +
                                 " wavelets are in flight");
    cycle_ += n;
  }

  void tick() {
    if (in_flight_)
      run_cycle();
    else
      ++cycle_;
  }

  // True when the next cycle would neither move a wavelet nor raise (see PyFabricCore.stuck).
  bool stuck() const {
    if (!in_flight_ || !injections_.empty() || !ramp_in_flight_.empty()) return false;
    bool movable = false;
    for_each_active([&](int i) {
      if (movable) return;
      const Router& r = routers_[i];
      unsigned __int128 bits = r.nonempty;
      while (bits) {
        const int s = ctz128(bits);
        bits &= bits - 1;
        if (front(slot_rings_[static_cast<size_t>(i) * kSlots + s]).ready > cycle_) {
          movable = true;   // still in the router's pipeline: time moves it
          return;
        }
        const int color = s % kColors;
        const int d = s / kColors;
        if (r.teardown >> color & 1) continue;
        if (!(r.rx[color] >> d & 1)) {
          if (!(cfg(i, color).accept >> d & 1)) {
            movable = true;   // raises next cycle
            return;
          }
          continue;
        }
        const int tx = head_tx(i, s);
        if (!destinations_valid(r, color, tx) || (tx && can_take(i, r, color, tx, 0)) ||
            (!tx && dropped(i, s))) {
          movable = true;
          return;
        }
      }
      for (int q = 0; q < n_oq_; ++q) {
        const Ring& ring = oq_rings_[static_cast<size_t>(i) * n_oq_ + q];
        if (!ring.count) continue;
        const int color = front(ring).color;
        if (!(accepts(i, color) & 1) ||
            slot_rings_[static_cast<size_t>(i) * kSlots + color].count < ramp_depth_) {
          movable = true;
          return;
        }
      }
    });
    return !movable;
  }

  // ---- introspection ----

  py::list take_deliveries() {
    py::list out;
    for (const auto& d : deliveries_)
      out.append(py::make_tuple(d.cycle, d.x, d.y, d.queue, d.color, d.payload, d.ctrl));
    deliveries_.clear();
    return out;
  }

  py::list blocked_wavelets() const {
    py::list out;
    for_each_active([&](int i) {
      const Router& r = routers_[i];
      for (int s = 0; s < kSlots; ++s) {
        if (!(r.nonempty >> s & 1)) continue;
        if (front(slot_rings_[static_cast<size_t>(i) * kSlots + s]).ready > cycle_) continue;
        const int color = s % kColors;
        const int d = s / kColors;
        std::string reasons;
        if (r.teardown >> color & 1) {
          reasons = "color " + std::to_string(color) + " of " + pe_name(r.x, r.y) +
                    " is in teardown mode";
        } else if (!(r.rx[color] >> d & 1)) {
          reasons = "the switch position of color " + std::to_string(color) + " at " +
                    pe_name(r.x, r.y) + " does not take wavelets from " + kNames[d] + " (rx=" +
                    format_mask(r.rx[color]) + ")";
        } else if (dropped(i, s)) {
          continue;
        } else {
          reasons = wait_reasons(i, color, head_tx(i, s));
        }
        if (!reasons.empty())
          out.append(py::make_tuple(int(r.x), int(r.y), kNames[s / kColors], color, reasons));
      }
      for (int q = 0; q < n_oq_; ++q) {
        const Ring& ring = oq_rings_[static_cast<size_t>(i) * n_oq_ + q];
        if (!ring.count) continue;
        const int color = front(ring).color;
        std::string reason;
        if (!(accepts(i, color) & 1))
          reason = pe_name(r.x, r.y) + " does not accept color " + std::to_string(color) +
                   " from RAMP (rx=" + format_mask(r.rx[color]) + ")";
        else if (slot_rings_[static_cast<size_t>(i) * kSlots + color].count >= ramp_depth_)
          reason = "buffer RAMP/color " + std::to_string(color) + " of " + pe_name(r.x, r.y) +
                   " full";
        else
          continue;
        out.append(py::make_tuple(int(r.x), int(r.y), "OQ" + std::to_string(q), color, reason));
      }
    });
    return out;
  }

  py::dict counters() const {
    const py::ssize_t h = height_, w = width_;
    py::dict d;
    d["cycle"] = cycle_;
    d["link_out"] = as_array(link_out_, {h, w, py::ssize_t(kDirs)});
    d["link_in"] = as_array(link_in_, {h, w, py::ssize_t(kDirs)});
    d["stall_cycles"] = as_array(stall_cycles_, {h, w});
    d["stalled_wavelet_cycles"] = as_array(stalled_, {h, w});
    d["iq_high_water"] = as_array(high_water(iq_rings_), {h, w, py::ssize_t(n_iq_)});
    d["oq_high_water"] = as_array(high_water(oq_rings_), {h, w, py::ssize_t(n_oq_)});
    d["buffer_high_water"] = as_array(high_water(slot_rings_),
                                      {h, w, py::ssize_t(kDirs), py::ssize_t(kColors)});
    return d;
  }

  int width() const { return width_; }
  int height() const { return height_; }

  // ---- for the PE engine (pe_engine.hpp): by router index, queue numbers already checked ----
  int n_iq() const { return n_iq_; }
  int n_oq() const { return n_oq_; }
  int iq_count_at(int i, int q) const { return readable(iq_rings_[static_cast<size_t>(i) * n_iq_ + q]); }
  int oq_count_at(int i, int q) const { return oq_rings_[static_cast<size_t>(i) * n_oq_ + q].count; }
  int oq_free_at(int i, int q) const {
    const Ring& ring = oq_rings_[static_cast<size_t>(i) * n_oq_ + q];
    return ring.cap - ring.count;
  }
  void ce_send_at(int i, int oq, int color, uint32_t payload, bool ctrl = false) {
    Router& r = routers_[i];
    push(oq_rings_[static_cast<size_t>(i) * n_oq_ + oq],
         Wavelet{payload, static_cast<uint8_t>(color), static_cast<uint8_t>(ctrl), 0});
    r.oq_nonempty |= 1u << oq;
    add_load(r, i);
  }
  // The readable head of input queue iq (nullptr: none), for control-wavelet dispatch.
  const Wavelet* iq_head_at(int i, int iq) const {
    const Ring& ring = iq_rings_[static_cast<size_t>(i) * n_iq_ + iq];
    if (!ring.count || front(ring).ready > cycle_) return nullptr;
    return &front(ring);
  }
  int iq_color_at(int i, int iq) const { return iq_color_[static_cast<size_t>(i) * n_iq_ + iq]; }
  uint32_t ce_recv_at(int i, int iq) { return pop(iq_rings_[static_cast<size_t>(i) * n_iq_ + iq]).payload; }
  // Wavelet link traversals so far (the sum of the link_out and link_in counters).
  int64_t hops() const { return hops_; }
  // CE-side events for the engine's sleeping PEs, recorded only while an engine listens:
  // (cycle, router) when a wavelet becomes readable in one of the router's input queues
  // from that cycle on, or when one of its output queues gives a wavelet to the router
  // (space from the next cycle on).
  void listen(bool on) {
    listen_ = on;
    ce_events_.clear();
  }
  std::vector<std::pair<int64_t, int>>& ce_events() { return ce_events_; }

 private:
  // ---- helpers ----

  Router& at(int64_t x, int64_t y) {
    if (x < 0 || y < 0 || x >= width_ || y >= height_)
      fail(ErrorKind::kConfig, "PE(" + std::to_string(x) + "," + std::to_string(y) +
                                   ") is outside the " + std::to_string(width_) + "x" +
                                   std::to_string(height_) + " grid");
    return routers_[static_cast<size_t>(y) * width_ + x];
  }
  Ring& iq_at(int64_t x, int64_t y, int64_t q) {
    const Router& r = at(x, y);
    check_queue(true, q);
    return iq_rings_[static_cast<size_t>(index_of(r)) * n_iq_ + q];
  }
  Ring& oq_at(int64_t x, int64_t y, int64_t q) {
    const Router& r = at(x, y);
    check_queue(false, q);
    return oq_rings_[static_cast<size_t>(index_of(r)) * n_oq_ + q];
  }
  int index_of(const Router& r) const { return r.y * width_ + r.x; }

  static void check_color(int64_t c) {
    if (c < 0 || c >= kColors)
      fail(ErrorKind::kConfig, "color " + std::to_string(c) + " out of range 0..23");
  }
  static void check_direction(int64_t d) {
    if (d < 0 || d >= kDirs)
      fail(ErrorKind::kConfig, "direction " + std::to_string(d) + " out of range 0..4");
  }
  static void check_payload(int64_t p) {
    if (p < 0 || p > kMaxPayload)
      fail(ErrorKind::kConfig, "payload " + std::to_string(p) + " does not fit in 32 bits");
  }
  void check_queue(bool input, int64_t q) const {
    const int n = input ? n_iq_ : n_oq_;
    if (q < 0 || q >= n)
      fail(ErrorKind::kConfig, std::string(input ? "input" : "output") + " queue " +
                                   std::to_string(q) + " out of range 0.." + std::to_string(n - 1));
  }
  void edge_port(const Router& r, int64_t d, const char* what) const {
    check_direction(d);
    if (d == kRamp) fail(ErrorKind::kConfig, std::string(what) + ": RAMP is not an edge port");
    if (r.nbr[d] >= 0) {
      const Router& o = routers_[r.nbr[d]];
      fail(ErrorKind::kConfig, std::string(what) + ": " + pe_name(r.x, r.y) + " " + kNames[d] +
                                   " is not an edge port (it leads to " + pe_name(o.x, o.y) + ")");
    }
  }

  Ring new_ring(uint16_t cap) {
    const Ring ring{static_cast<uint32_t>(pool_.size()), cap, 0, 0, 0};
    pool_.resize(pool_.size() + cap);
    return ring;
  }

  void push(Ring& ring, const Wavelet& w) {
    uint32_t pos = uint32_t(ring.head) + ring.count;
    if (pos >= ring.cap) pos -= ring.cap;
    pool_[ring.base + pos] = w;
    if (++ring.count > ring.hw) ring.hw = ring.count;
  }
  Wavelet pop(Ring& ring) {
    const Wavelet w = pool_[ring.base + ring.head];
    if (++ring.head == ring.cap) ring.head = 0;
    --ring.count;
    return w;
  }
  const Wavelet& front(const Ring& ring) const { return pool_[ring.base + ring.head]; }
  // Input-queue wavelets the CE can read now: the leading ones off the ramp.
  int readable(const Ring& ring) const {
    int n = 0;
    uint32_t pos = ring.head;
    while (n < ring.count && pool_[ring.base + pos].ready <= cycle_) {
      ++n;
      if (++pos == ring.cap) pos = 0;
    }
    return n;
  }

  void add_load(Router& r, int i) {
    ++r.load;
    ++in_flight_;
    active_[i >> 6] |= uint64_t(1) << (i & 63);
  }

  void push_buffer(Router& r, int i, int slot, Wavelet w, int64_t ready) {
    w.ready = ready;
    push(slot_rings_[static_cast<size_t>(i) * kSlots + slot], w);
    r.nonempty |= static_cast<unsigned __int128>(1) << slot;
    add_load(r, i);
  }

  template <class F>
  void for_each_active(F&& f) const {
    for (size_t wi = 0; wi < active_.size(); ++wi) {
      uint64_t bits = active_[wi];
      while (bits) {
        f(static_cast<int>(wi * 64 + __builtin_ctzll(bits)));
        bits &= bits - 1;
      }
    }
  }

  static std::vector<int64_t> high_water(const std::vector<Ring>& rings) {
    std::vector<int64_t> out(rings.size());
    for (size_t k = 0; k < rings.size(); ++k) out[k] = rings[k].hw;
    return out;
  }

  static py::array_t<int64_t> as_array(const std::vector<int64_t>& v,
                                       std::vector<py::ssize_t> shape) {
    py::array_t<int64_t> a(shape);
    std::copy(v.begin(), v.end(), a.mutable_data());
    return a;
  }

  // ---- the cycle (decide on the start-of-cycle state, then commit) ----

  void check_destinations(const Router& r, int color, int tx) const {
    for (int o = 0; o < kDirs; ++o) {
      if (!(tx >> o & 1)) continue;
      if (o == kRamp) {
        if (r.color_iq[color] < 0 && !r.queue_wait)
          fail(ErrorKind::kRouting, "cycle " + std::to_string(cycle_) + ": wavelet on color " +
                                        std::to_string(color) + " routed to RAMP at " +
                                        pe_name(r.x, r.y) + ", but no input queue of " +
                                        pe_name(r.x, r.y) + " is bound to color " +
                                        std::to_string(color));
        continue;
      }
      if (r.nbr[o] < 0) continue;
      const Router& n = routers_[r.nbr[o]];
      const int back = kOpposite[o];
      const int oc = out_color(r, color, o);
      if (!(accepts(r.nbr[o], oc) >> back & 1))
        fail(ErrorKind::kRouting, "cycle " + std::to_string(cycle_) + ": " + pe_name(r.x, r.y) +
                                      " forwards a wavelet on color " + std::to_string(color) +
                                      " " + kNames[o] + " to " + pe_name(n.x, n.y) +
                                      ", which does not accept color " + std::to_string(oc) +
                                      " from " + kNames[back] + " (rx=" +
                                      format_mask(n.rx[oc]) + ")");
    }
  }

  bool destinations_valid(const Router& r, int color, int tx) const {
    for (int o = 0; o < kDirs; ++o) {
      if (!(tx >> o & 1)) continue;
      if (o == kRamp) {
        if (r.color_iq[color] < 0 && !r.queue_wait) return false;
      } else if (r.nbr[o] >= 0 && !(accepts(r.nbr[o], out_color(r, color, o)) >> kOpposite[o] & 1)) {
        return false;
      }
    }
    return true;
  }

  bool can_take(int i, const Router& r, int color, int tx, int used) const {
    if (tx & used) return false;
    for (int o = 0; o < kDirs; ++o) {
      if (!(tx >> o & 1)) continue;
      if (o == kRamp) {
        if (r.color_iq[color] < 0) return false;
        const Ring& iq = iq_rings_[static_cast<size_t>(i) * n_iq_ + r.color_iq[color]];
        if (iq.count >= iq.cap) return false;
      } else if (r.nbr[o] >= 0) {
        const size_t slot = static_cast<size_t>(r.nbr[o]) * kSlots + kOpposite[o] * kColors +
                            out_color(r, color, o);
        if (slot_rings_[slot].count >= depth_) return false;
      }
    }
    return true;
  }

  // PyFabricCore._head_route: sets tx to the outputs of the wavelet heading slot s and
  // returns whether it must wait for the router (teardown, or not the switch position's rx).
  bool head_route(int i, int s, int& tx) {
    Router& r = routers_[i];
    const int d = s / kColors, color = s % kColors;
    tx = 0;
    if (r.teardown >> color & 1) return true;
    if (!(r.rx[color] >> d & 1)) {
      if (!(cfg(i, color).accept >> d & 1))
        fail(ErrorKind::kRouting, "cycle " + std::to_string(cycle_) + ": " + pe_name(r.x, r.y) +
                                      " holds a wavelet on color " + std::to_string(color) +
                                      " from " + kNames[d] +
                                      ", which no route or switch position of color " +
                                      std::to_string(color) + " there accepts (rx=" +
                                      format_mask(r.rx[color]) + ")");
      return true;
    }
    tx = head_tx(i, s);
    if (tx != r.tx[color]) {
      check_destinations(r, color, tx);
    } else if (!(r.valid_colors >> color & 1)) {
      // The checks only depend on the configuration, so a pass is cached until it changes.
      check_destinations(r, color, tx);
      r.valid_colors |= 1u << color;
    }
    return false;
  }

  // PyFabricCore._head_tx: the outputs of the wavelet heading slot s (RAMP dropped when the
  // CE is kept from it).
  int head_tx(int i, int s) const {
    const int tx = routers_[i].tx[s % kColors];
    return ce_filtered(i, s) ? tx & ~1 : tx;
  }

  // PyFabricCore._ce_filtered: kept from the CE by NOCE or by a range filter.
  bool ce_filtered(int i, int s) const {
    const Wavelet& w = front(slot_rings_[static_cast<size_t>(i) * kSlots + s]);
    const ColorCfg& c = cfg(i, s % kColors);
    if (c.cf_limit >= 0 && (w.ctrl ? c.cf_control : c.cf_data) && c.cf_counter > c.cf_max)
      return true;
    if (w.ctrl) return w.payload >> 24 & 1;
    const int32_t idx = static_cast<int32_t>(w.payload >> 16);
    return c.filt_lo >= 0 && (idx < c.filt_lo || idx > c.filt_hi);
  }

  // PyFabricCore._dropped: a wavelet whose only output was the CE, filtered from it.
  bool dropped(int i, int s) const {
    return routers_[i].tx[s % kColors] == 1 && ce_filtered(i, s);
  }

  // PyFabricCore._execute: a control wavelet's slot-0 command at router i; the payload it
  // forwards.
  uint32_t execute(int i, int color, uint32_t p, int64_t t) {
    Router& r = routers_[i];
    ColorCfg& c = cfg(i, color);
    const int cmd = (p >> 22) & 3;
    bool advanced = false;
    if (cmd == kCmdTeardown) {
      r.teardown |= 1u << color;
      teardowns_.emplace_back(t, i, color);
      refresh(i, color);
    } else if (c.has_sw && cmd == kCmdRst) {
      c.cur = 0;
      refresh(i, color);
    } else if (c.has_sw && cmd == kCmdAdv) {
      int nxt = -1;
      for (int k = c.cur + 1; k < 4; ++k)
        if (c.pos[2 * k - 2] >= 0 || c.pos[2 * k - 1] >= 0) { nxt = k; break; }
      if (nxt < 0) nxt = c.ring ? 0 : c.cur;
      advanced = nxt != c.cur;
      c.cur = static_cast<uint8_t>(nxt);
      refresh(i, color);
    }
    if (c.has_sw && (c.pop == kPopAlways || (c.pop == kPopOnAdvance && advanced)))
      p = control_pop(p);
    return p;
  }

  void plan(int i) {
    Router& r = routers_[i];
    int stalled = 0;
    int first = -1;
    if (r.nonempty) {
      if (r.valid_epoch != epoch_) {
        r.valid_epoch = epoch_;
        r.valid_colors = 0;
      }
      int used = 0;
      const unsigned __int128 all = ~static_cast<unsigned __int128>(0);
      // Scan slots rr..119 then 0..rr-1.
      const unsigned __int128 parts[2] = {r.nonempty & (all << r.rr), r.nonempty & ~(all << r.rr)};
      for (unsigned __int128 bits : parts) {
        while (bits) {
          const int s = ctz128(bits);
          bits &= bits - 1;
          const int color = s % kColors;
          int tx = 0;
          const bool held = head_route(i, s, tx);
          // Still in the router's pipeline: not a stall.
          if (front(slot_rings_[static_cast<size_t>(i) * kSlots + s]).ready > cycle_) continue;
          if (held || (tx == 0 && !dropped(i, s)) || !can_take(i, r, color, tx, used)) {
            ++stalled;
            continue;
          }
          used |= tx;
          if (first < 0) first = s;
          moves_.push_back(Move{static_cast<uint32_t>(i), static_cast<uint16_t>(s),
                                static_cast<uint8_t>(tx)});
        }
      }
    }
    int chosen = -1;
    if (r.oq_nonempty) {
      const Ring* oqs = &oq_rings_[static_cast<size_t>(i) * n_oq_];
      for (int q = 0; q < n_oq_; ++q) {
        if (!(r.oq_nonempty >> q & 1)) continue;
        const int color = front(oqs[q]).color;
        if (!(accepts(i, color) & 1))
          fail(ErrorKind::kRouting, "cycle " + std::to_string(cycle_) + ": " + pe_name(r.x, r.y) +
                                        " output queue " + std::to_string(q) +
                                        " sends a wavelet on color " + std::to_string(color) +
                                        " into its router from RAMP, but color " +
                                        std::to_string(color) + " there accepts rx=" +
                                        format_mask(r.rx[color]));
      }
      for (int k = 0; k < n_oq_; ++k) {
        int q = r.oq_rr + k;
        if (q >= n_oq_) q -= n_oq_;
        if (!(r.oq_nonempty >> q & 1)) continue;
        const int color = front(oqs[q]).color;  // RAMP slot of a color = the color
        if (slot_rings_[static_cast<size_t>(i) * kSlots + color].count < ramp_depth_) {
          chosen = q;
          break;
        }
      }
      stalled += __builtin_popcount(r.oq_nonempty) - (chosen >= 0 ? 1 : 0);
      if (chosen >= 0)
        ce_moves_.push_back(CeMove{static_cast<uint32_t>(i), static_cast<uint32_t>(chosen)});
    }
    if (stalled) stalls_.emplace_back(i, stalled);
    if (first >= 0 || chosen >= 0)
      pointers_.push_back(
          Pointer{static_cast<uint32_t>(i),
                  static_cast<uint16_t>(first >= 0 ? (first + 1) % kSlots : r.rr),
                  static_cast<uint16_t>(chosen >= 0 ? (chosen + 1) % n_oq_ : r.oq_rr)});
  }

  void run_cycle() {
    moves_.clear();
    ce_moves_.clear();
    stalls_.clear();
    pointers_.clear();
    for_each_active([this](int i) { plan(i); });

    const int64_t t = cycle_;
    for (const Move& m : moves_) {
      Router& r = routers_[m.router];
      const int i = static_cast<int>(m.router);
      Ring& src = slot_rings_[static_cast<size_t>(i) * kSlots + m.slot];
      Wavelet w = pop(src);
      if (!src.count) r.nonempty &= ~(static_cast<unsigned __int128>(1) << m.slot);
      --r.load;
      --in_flight_;
      const int color = w.color;
      {
        ColorCfg& c = cfg(i, color);
        if (c.cf_limit >= 0 && (w.ctrl ? c.cf_control : c.cf_data))
          c.cf_counter = c.cf_counter >= c.cf_limit ? 0 : c.cf_counter + 1;
      }
      if (w.ctrl) w.payload = execute(i, color, w.payload, t);
      for (int o = 0; o < kDirs; ++o) {
        if (!(m.tx >> o & 1)) continue;
        ++link_out_[static_cast<size_t>(i) * kDirs + o];
        ++hops_;
        if (o == kRamp) {
          const int q = r.color_iq[color];
          Wavelet d = w;
          d.ready = t + ramp_in_;
          push(iq_rings_[static_cast<size_t>(i) * n_iq_ + q], d);
          if (listen_) ce_events_.emplace_back(d.ready, i);
          if (ramp_in_ > 1) {   // on the ramp: in flight until readable
            ramp_in_flight_.emplace_back(d.ready, i);
            add_load(r, i);
          }
          if (record_)
            deliveries_.push_back(Delivery{t, r.x, r.y, q, color, w.payload, w.ctrl != 0});
          continue;
        }
        const int nb = r.nbr[o];
        const int oc = out_color(r, color, o);
        if (nb < 0) {
          sinks_[i * kDirs + o].push_back(SinkRecord{t, oc, w.payload, w.ctrl != 0});
          continue;
        }
        const int back = kOpposite[o];
        ++link_in_[static_cast<size_t>(nb) * kDirs + back];
        ++hops_;
        Wavelet ow = w;
        ow.color = static_cast<uint8_t>(oc);
        push_buffer(routers_[nb], nb, back * kColors + oc, ow, t + hop_);
      }
    }
    for (const CeMove& m : ce_moves_) {
      Router& r = routers_[m.router];
      const int i = static_cast<int>(m.router);
      Ring& oq = oq_rings_[static_cast<size_t>(i) * n_oq_ + m.queue];
      const Wavelet w = pop(oq);
      if (!oq.count) r.oq_nonempty &= ~(1u << m.queue);
      if (listen_) ce_events_.emplace_back(t + 1, i);
      --r.load;
      --in_flight_;
      ++link_in_[static_cast<size_t>(i) * kDirs + kRamp];
      ++hops_;
      push_buffer(r, i, kRamp * kColors + w.color, w, t + ramp_out_);
    }
    for (const Injection& inj : injections_) {
      Router& r = routers_[inj.router];
      --r.load;  // counted since inject(); push_buffer counts it again
      --in_flight_;
      push_buffer(r, static_cast<int>(inj.router), inj.slot, inj.w, t + hop_);
    }
    injections_.clear();
    // Wavelets readable since this cycle leave the ramp (PyFabricCore).
    while (!ramp_in_flight_.empty() && ramp_in_flight_.front().first <= t) {
      const int i = ramp_in_flight_.front().second;
      ramp_in_flight_.pop_front();
      --routers_[i].load;
      --in_flight_;
      if (!routers_[i].load) active_[i >> 6] &= ~(uint64_t(1) << (i & 63));
    }
    for (const auto& [i, n] : stalls_) {
      ++stall_cycles_[i];
      stalled_[i] += n;
    }
    for (const Pointer& p : pointers_) {
      routers_[p.router].rr = p.rr;
      routers_[p.router].oq_rr = p.oq_rr;
    }
    // Only routers that sent something can have become empty.
    for (const Move& m : moves_)
      if (!routers_[m.router].load) active_[m.router >> 6] &= ~(uint64_t(1) << (m.router & 63));
    for (const CeMove& m : ce_moves_)
      if (!routers_[m.router].load) active_[m.router >> 6] &= ~(uint64_t(1) << (m.router & 63));
    for (uint32_t i : host_used_list_) routers_[i].host_used = 0;
    host_used_list_.clear();
    cycle_ = t + 1;
  }

  std::string wait_reasons(int i, int color, int tx) const {
    const Router& r = routers_[i];
    if (tx == 0)
      return "no route: color " + std::to_string(color) + " has an empty tx at " +
             pe_name(r.x, r.y);
    std::string out;
    auto add = [&out](const std::string& s) {
      if (!out.empty()) out += "; ";
      out += s;
    };
    for (int o = 0; o < kDirs; ++o) {
      if (!(tx >> o & 1)) continue;
      if (o == kRamp) {
        const int q = r.color_iq[color];
        if (q < 0) {
          add("no input queue of " + pe_name(r.x, r.y) + " is bound to color " +
              std::to_string(color));
        } else {
          const Ring& iq = iq_rings_[static_cast<size_t>(i) * n_iq_ + q];
          if (iq.count >= iq.cap)
            add("input queue " + std::to_string(q) + " of " + pe_name(r.x, r.y) + " full");
        }
        continue;
      }
      if (r.nbr[o] < 0) continue;
      const Router& n = routers_[r.nbr[o]];
      const int back = kOpposite[o];
      const int oc = out_color(r, color, o);
      if (!(accepts(r.nbr[o], oc) >> back & 1))
        add(pe_name(n.x, n.y) + " does not accept color " + std::to_string(oc) + " from " +
            kNames[back] + " (rx=" + format_mask(n.rx[oc]) + ")");
      else if (slot_rings_[static_cast<size_t>(r.nbr[o]) * kSlots + back * kColors + oc]
                   .count >= depth_)
        add(std::string("buffer ") + kNames[back] + "/color " + std::to_string(oc) + " of " +
            pe_name(n.x, n.y) + " full");
    }
    return out;
  }

  int width_ = 0, height_ = 0, n_iq_ = 0, n_oq_ = 0;
  uint16_t depth_ = 2;        // link input buffers, pipeline registers included
  uint16_t ramp_depth_ = 2;   // the RAMP input buffer
  int64_t hop_ = 1, ramp_out_ = 1, ramp_in_ = 1;
  std::deque<std::pair<int64_t, int>> ramp_in_flight_;   // (readable cycle, router)
  bool record_ = false;
  bool listen_ = false;
  std::vector<std::pair<int64_t, int>> ce_events_;
  int64_t cycle_ = 0;
  int64_t in_flight_ = 0;
  uint32_t epoch_ = 1;
  std::vector<Router> routers_;
  std::vector<Ring> slot_rings_;  // router * 120 + slot
  std::vector<ColorCfg> cfg_;     // router * 24 + color
  std::vector<std::tuple<int64_t, int, int>> teardowns_;
  std::vector<Ring> iq_rings_;    // router * n_iq + q
  std::vector<Ring> oq_rings_;    // router * n_oq + q
  std::vector<Wavelet> pool_;
  std::vector<int8_t> iq_color_;
  std::vector<uint64_t> active_;  // bitmap of routers with load > 0
  std::vector<uint32_t> host_used_list_;
  std::vector<Injection> injections_;  // crossing host links this cycle
  std::unordered_map<int, std::vector<SinkRecord>> sinks_;
  std::vector<Delivery> deliveries_;
  std::vector<Move> moves_;
  std::vector<CeMove> ce_moves_;
  std::vector<std::pair<int, int>> stalls_;
  std::vector<Pointer> pointers_;
  std::vector<int64_t> link_out_, link_in_, stall_cycles_, stalled_;
  int64_t hops_ = 0;
};

// The compiled PE model, running on Core (its own file: one concern per file).
#include "pe_engine.hpp"

}  // namespace

PYBIND11_MODULE(_fabric, m) {
  m.doc() = "C++ core of the waferscale fabric simulator; use waferscale.sim.fabric.Fabric.";

  m.def("set_error_types", [](py::object base, py::object config, py::object routing) {
    py::object types[3] = {base, config, routing};
    for (int k = 0; k < 3; ++k) {
      Py_XDECREF(g_error_types[k]);
      g_error_types[k] = types[k].release().ptr();
    }
  }, "Register the Python classes for FabricError, FabricConfigError, FabricRoutingError.");

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const FabricException& e) {
      PyObject* type = g_error_types[static_cast<int>(e.kind)];
      if (!type) type = e.kind == ErrorKind::kConfig ? PyExc_ValueError : PyExc_RuntimeError;
      PyErr_SetString(type, e.what());
    }
  });

  py::class_<Core>(m, "Core")
      .def(py::init<int64_t, int64_t, std::vector<int64_t>, std::vector<int64_t>, int64_t, bool,
                    int64_t, int64_t, int64_t>(),
           py::arg("width"), py::arg("height"), py::arg("iq_depths"), py::arg("oq_depths"),
           py::arg("buffer_depth"), py::arg("record_deliveries"), py::arg("hop_latency") = 1,
           py::arg("ce_to_router_latency") = 1, py::arg("router_to_ce_latency") = 1)
      .def("set_route", &Core::set_route)
      .def("get_route", &Core::get_route)
      .def("set_switches", &Core::set_switches)
      .def("switch_state", &Core::switch_state)
      .def("router_config", &Core::router_config)
      .def("set_teardown", &Core::set_teardown)
      .def("set_filter", &Core::set_filter)
      .def("set_color_swap", &Core::set_color_swap)
      .def("set_queue_wait", &Core::set_queue_wait)
      .def("set_counter_filter", &Core::set_counter_filter)
      .def("in_teardown", &Core::in_teardown)
      .def("take_teardowns", &Core::take_teardowns)
      .def("enable_edge_sink", &Core::enable_edge_sink)
      .def("edge_sink_take", &Core::edge_sink_take)
      .def("bind_input_queue", &Core::bind_input_queue)
      .def("unbind_input_queue", &Core::unbind_input_queue)
      .def("input_queue_color", &Core::input_queue_color)
      .def("ce_send", &Core::ce_send, py::arg("x"), py::arg("y"), py::arg("oq"), py::arg("color"),
           py::arg("payload"), py::arg("ctrl") = false)
      .def("ce_recv", &Core::ce_recv)
      .def("ce_peek", &Core::ce_peek)
      .def("iq_count", &Core::iq_count)
      .def("oq_count", &Core::oq_count)
      .def("oq_free", &Core::oq_free)
      .def("inject", &Core::inject, py::arg("x"), py::arg("y"), py::arg("direction"),
           py::arg("color"), py::arg("payload"), py::arg("ctrl") = false)
      .def_property_readonly("cycle", &Core::cycle)
      .def_property_readonly("in_flight", &Core::in_flight)
      .def_property_readonly("idle", &Core::idle)
      .def_property_readonly("width", &Core::width)
      .def_property_readonly("height", &Core::height)
      .def("step", &Core::step, py::arg("n") = 1)
      .def("advance_clock", &Core::advance_clock)
      .def("tick", &Core::tick)
      .def("stuck", &Core::stuck)
      .def("take_deliveries", &Core::take_deliveries)
      .def("blocked_wavelets", &Core::blocked_wavelets)
      .def("counters", &Core::counters);

  py::class_<Engine>(m, "Engine")
      .def(py::init<Core&, bool, py::dict, int64_t, bool, bool, py::list>(),
           py::arg("core"), py::arg("wse2"), py::arg("costs"), py::arg("max_cycles"),
           py::arg("random_order"), py::arg("trace"), py::arg("ops"), py::keep_alive<1, 2>())
      .def("add_program", &Engine::add_program)
      .def("add_pe", &Engine::add_pe)
      .def("set_dsd_var", &Engine::set_dsd_var)
      .def("set_dsr", &Engine::set_dsr)
      .def("launch", &Engine::launch)
      .def("stream_h2d", &Engine::stream_h2d)
      .def("stream_d2h", &Engine::stream_d2h)
      .def("advance_to", &Engine::advance_to)
      .def_property_readonly("cycle", &Engine::cycle)
      .def_property_readonly("visits", &Engine::visits)
      .def("last_error", &Engine::last_error)
      .def("describe", &Engine::describe)
      .def("host_io_waits", &Engine::host_io_waits)
      .def("collective_waits", &Engine::collective_waits)
      .def("stats", &Engine::stats)
      .def("task_state", &Engine::task_state)
      .def("task_states", &Engine::task_states)
      .def("take_dirty", &Engine::take_dirty)
      .def("take_events", &Engine::take_events)
      .def("set_progress", &Engine::set_progress);
  m.attr("ENGINE_DSD_OPS") = [] {
    py::list l;
    for (const char* name : kOpNames) l.append(name);
    return l;
  }();
  m.attr("ENGINE_DSD_WORDS") = kDsdInts;
  m.attr("ENGINE_CALL_WORDS") = kCallInts;
  // The interface this extension was built from (engine_abi.fingerprint(); engine.why_not).
  m.attr("ENGINE_ABI") = kEngineAbi;
}
