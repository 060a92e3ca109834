// The compiled PE model: a bytecode VM for the run-time code of every PE, its task scheduler,
// and the simulator's cycle loop, running on the C++ fabric core (fabric.cpp includes this).
//
// This is the same model as runtime/waferscale/sim/simulator.py + pe.py + dsd.py, which are
// its definition; runtime/waferscale/sim/lower.py documents the bytecode and compiles CSL to
// it. The two paths must agree cycle for cycle and bit for bit:
// simulator_tests/sim/test_engine.py runs programs and kernels on both and compares memory,
// cycles and per-PE counters. Each function below names the Python function it mirrors.

#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>

#include "pe_values.hpp"   // scalar types, f16/f32 rounding, DSD element functions
#include "pe_program.hpp"  // the bytecode format (lower.py)

// An error of the simulated program: Python formats it with cycle, PE, task and source span.
struct EngineError {
  std::string msg;
  int32_t node;
  bool semantic = false;   // a CSL semantic error (Python: CslSemanticError, rendered with a caret)
};

enum Wait : int32_t { kNoWait = 0, kWaitIq, kWaitOq, kWaitMain, kWaitUt, kWaitFifoPop, kWaitFifoPush };
enum Step : int { kYield = 0, kDone = 1 };

// A resolved DSD-operation operand (dsd.MemOperand / FabIn / FabOut / Scalar).
struct Operand {
  int32_t kind;                     // 0 memory, 1 fabin, 2 fabout, 3 scalar, 4 FIFO
  bool pointer = false;
  int32_t ew = 1;                   // words per element (memory)
  int32_t abase = 0, astep = 0;     // element i at abase + i * astep (when addrs is empty)
  std::vector<int32_t> addrs;       // explicit addresses (mem4d)
  int32_t len = 0;
  int32_t queue = 0, color = 0, index = -1;
  bool ctrl = false;                // fabout: control wavelets (`.control = true`)
  bool queue_color = false;         // fabout without .fabric_color: its queue's current color
  int32_t ut = 0;                   // fabric operands: the microthread ID the DSD selects
  Scalar value{};
  int32_t scalar_tc = 0;            // a scalar's type
  // A memory DSD resolved without its bounds check (dsd.resolve(check=False)): its kind
  // name and base address, for check_first once the op's length is known.
  const char* unchecked = nullptr;
  int32_t dbase = 0;
  int32_t addr(int i) const {
    if (pointer) return abase;
    return addrs.empty() ? abase + i * astep : addrs[i];
  }
  // Does the op take its length from this operand (a DSD, not a scalar or `*T` pointer)?
  bool has_length() const { return kind == 1 || kind == 2 || (kind == 0 && !pointer); }
};

struct OpState {
  const DsdCall* call = nullptr;
  Operand ops[4];
  int32_t n = 0, i = 0, j = 0;
  int32_t simd = 1;                 // elements per cycle (the op's width, stride-limited)
  int64_t setup = 0;                // cycles before the elements; 0 once the issuer paid them
  bool started = false, computed = false;
  int64_t start_time = 0;
  Scalar vals[3]{};
  Scalar result{};
  int32_t activate = -1, unblock = -1;   // completion actions (op_settings)
};

// A running @map (builtins_rt._map): resolved operands (inputs, then the output) and the
// element index; the loop itself is a synthetic function of map instructions (lower.py).
struct MapState {
  const DsdCall* call = nullptr;
  std::vector<Operand> ops;
  int32_t n = 0, i = 0;
  int32_t activate = -1, unblock = -1;   // completion actions (op_settings)
};

struct Frame {
  int32_t fn, pc, slots, dslots;
};

struct Ctx {
  int32_t name;
  bool main = false, started = false;   // main: a task (trace category "task")
  int64_t start_time = 0;
  int64_t ready_at = 0;
  bool done = false;
  int32_t wait = kNoWait, wq = 0, wcolor = 0;
  // kWaitMain / kWaitUt (Context.after): the context this one is queued behind (an RPC
  // behind the main thread, an async op behind its microthread's previous op; wq: the ID).
  std::shared_ptr<Ctx> prev;
  int32_t phase = 0;                // fabric access: 0 before sync_time, 1 waiting
  std::vector<Frame> frames;
  std::vector<Scalar> stack, locals;
  std::vector<Dsd> dstack, dlocals;
  bool in_op = false, async_op = false;
  bool micro_async = false;         // an async op or async @map: signals at its own time
  OpState op;
  MapState map;
};

// pe.TaskRng: splitmix64, the random task order's generator (the same numbers in Python).
struct TaskRng {
  uint64_t state = 0;
  uint64_t below(uint64_t n) {
    state += 0x9E3779B97F4A7C15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z % n;
  }
};

// A flag per task ID (the task table's active or blocked bits).
struct TaskBits {
  uint64_t w[2] = {0, 0};
  bool get(int t) const { return w[t >> 6] >> (t & 63) & 1; }
  void set(int t) { w[t >> 6] |= uint64_t(1) << (t & 63); }
  void clear(int t) { w[t >> 6] &= ~(uint64_t(1) << (t & 63)); }
  bool any() const { return w[0] | w[1]; }
};

struct PEState {
  int32_t x, y, idx;                // idx: router index
  Program* prog;
  uint16_t* mem;
  std::vector<std::pair<int32_t, int32_t>> data_queue;  // (task id, input queue)
  TaskBits active, blocked;                             // by task id (0..127)
  std::shared_ptr<Ctx> main;
  std::vector<std::shared_ptr<Ctx>> micro;
  int64_t main_free_at = 0, time = 0, unblock_time = 0;
  bool cmd_blocked = false;
  int64_t busy = 0, stall = 0, tasks_run = 0, live = 0;
  std::unordered_map<int32_t, Dsd> dsd_vars;   // DSD-typed globals, by word address
  // dsd.dsr_table: the DSD each DSR holds, its .save_address and its settings for async
  // ops (.async, .activate, .unblock, .ut_id; -1: none), by key (file << 16 | id; files
  // 0 dest, 1 src0, 2 src1: lower.py, dsr_key).
  struct DsrSlot {
    Dsd dsd;
    bool save;
    bool async_ = false;
    int32_t activate = -1, unblock = -1, ut = -1;
    bool has_settings() const { return async_ || activate >= 0 || unblock >= 0 || ut >= 0; }
  };
  std::unordered_map<int32_t, DsrSlot> dsrs;
  // dsd.fifo_state: per FIFO buffer (its word address), {head, count}; created empty.
  std::unordered_map<int32_t, std::pair<int32_t, int32_t>> fifos;
  int32_t task_name = -1;                      // the running context's name
  struct Timed { int64_t cycle; int32_t tid; bool unblock; };
  std::vector<Timed> timed;                         // pe.timed_activations
  std::shared_ptr<Ctx> ut_last[32];                 // pe.ut_last: latest async op per microthread
  TaskRng rng;                                      // --random-task-order
  std::string print_buffer;                         // <simprint> text before its newline
  // Sleeping (Engine::sleep): not visited by step() until a wake-up; the counters of the
  // cycles it sleeps through are added when it wakes (Engine::settle).
  bool asleep = false;
  bool sleep_runnable = false;       // asleep with no main thread and a runnable task
  bool sleep_live = false;           // asleep with a task or async op in flight
  uint32_t gen = 0;                  // bumped at every wake-up (stale pending-time entries)
  int64_t sleep_from = 0;            // first cycle not visited
  bool dirty = false;                // changed since Engine::take_dirty
  int8_t oq_color[32] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                         -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
  uint32_t flush_armed = 0;          // @queue_flush'd output queues (pe.flush_armed)
};

// <collectives_2d/pe> (sim/collectives.py): a rendezvous of every PE of a row or column.
struct CollCall {
  int32_t pe, op, root, send, recv, count, cb;
  int64_t time;
};
struct CollLine {
  std::vector<std::pair<int32_t, CollCall>> calls;  // (position, call) in arrival order
};

constexpr int32_t kWords = 24 * 1024;
constexpr int kTasks = 128;

class Engine {
 public:
  // Status of a run: what Python turns into its exception (simulator.Simulator).
  // enum Status (pe_abi.hpp): kOk, kDeadlock, kMaxCycles, kError, kFabricError.

  // ops: per kOpNames entry, an engine_abi.OpTypes (dest tcode, [src tcodes], simd per arch).
  // costs: TimingModel.engine_costs(), by name.
  Engine(Core& core, bool wse2, py::dict costs, int64_t max_cycles, bool random_order,
         bool trace, py::list ops)
      : core_(core), wse2_(wse2), statement_(costs["statement"].cast<int64_t>()),
        branch_(costs["branch"].cast<int64_t>()), task_start_(costs["task_start"].cast<int64_t>()),
        setup_(costs["dsd_op_setup"].cast<int64_t>()),
        fabric_start_(costs["fabric_op_start"].cast<int64_t>()),
        hop_(costs["hop_latency"].cast<int64_t>()),
        ramp_out_(costs["ce_to_router_latency"].cast<int64_t>()),
        ramp_in_(costs["router_to_ce_latency"].cast<int64_t>()), max_cycles_(max_cycles),
        random_order_(random_order), trace_(trace) {
    if (static_cast<int>(py::len(ops)) != kNumDsdOps)
      throw std::invalid_argument("the engine needs one table entry per op of ENGINE_DSD_OPS");
    for (int k = 0; k < kNumDsdOps; ++k) {
      auto t = ops[k].cast<py::tuple>();
      auto src = t[kOpTypesSrcs].cast<std::vector<int>>();
      if (src.empty() || src.size() > 3) throw std::invalid_argument("bad DSD op sources");
      OpInfo o{kOpNames[k], t[kOpTypesDest].cast<int>(), static_cast<int>(src.size()), {0, 0, 0},
               t[kOpTypesSimdWse2].cast<int>(), t[kOpTypesSimdWse3].cast<int>()};
      for (size_t j = 0; j < src.size(); ++j) o.src[j] = src[j];
      ops_.push_back(o);
    }
  }

  ~Engine() { core_.listen(false); }

  int add_program(py::array_t<int32_t> code, py::array_t<int64_t> consts,
                  py::array_t<int32_t> dconsts, py::array_t<int32_t> calls, py::list fns,
                  py::list tasks, py::dict exports, py::list syms, py::list names) {
    auto p = std::make_unique<Program>();
    auto c = code.unchecked<2>();
    for (py::ssize_t k = 0; k < c.shape(0); ++k)
      p->code.push_back(Ins{c(k, 0), c(k, 1), c(k, 2), c(k, 3)});
    auto k1 = consts.unchecked<1>();
    for (py::ssize_t k = 0; k < k1.shape(0); ++k) { Scalar s; s.i = k1(k); p->consts.push_back(s); }
    auto d = dconsts.unchecked<2>();
    for (py::ssize_t k = 0; k < d.shape(0); ++k) {
      Dsd x;
      std::memcpy(&x, d.data(k, 0), sizeof(Dsd));
      p->dconsts.push_back(x);
    }
    auto cl = calls.unchecked<2>();
    for (py::ssize_t k = 0; k < cl.shape(0); ++k) {
      DsdCall x;
      std::memcpy(&x, cl.data(k, 0), sizeof(DsdCall));
      p->calls.push_back(x);
    }
    // engine_abi.FnCode / TaskEntry / Sym, read by field (pe_abi.hpp: k<Tuple><Field>).
    for (auto f : fns) {
      auto t = f.cast<py::tuple>();
      FnCode fc;
      fc.entry = t[kFnCodeEntry].cast<int32_t>();
      fc.nslots = t[kFnCodeNslots].cast<int32_t>();
      fc.ndslots = t[kFnCodeNdslots].cast<int32_t>();
      fc.nparams = t[kFnCodeNparams].cast<int32_t>();
      fc.param_dsd = t[kFnCodeParamDsd].cast<std::vector<int32_t>>();
      p->fns.push_back(std::move(fc));
    }
    for (auto f : tasks) {
      auto t = f.cast<py::tuple>();
      TaskEntry te;
      te.tid = t[kTaskEntryTid].cast<int32_t>();
      te.kind = t[kTaskEntryKind].cast<int32_t>();
      te.fn = t[kTaskEntryFn].cast<int32_t>();
      te.ptypes = t[kTaskEntryPtypes].cast<std::vector<int32_t>>();
      te.name = t[kTaskEntryName].cast<int32_t>();
      p->has_control |= te.kind == kTaskControl;
      p->tasks.push_back(std::move(te));
    }
    for (auto kv : exports) p->exports[kv.first.cast<std::string>()] = kv.second.cast<int32_t>();
    for (auto s : syms) {
      auto t = s.cast<py::tuple>();
      Sym sy;
      sy.lo = t[kSymLo].cast<int32_t>();
      sy.n = t[kSymN].cast<int32_t>();
      sy.name = t[kSymName].cast<std::string>();
      p->syms.push_back(std::move(sy));
    }
    for (auto n : names) p->names.push_back(n.cast<std::string>());
    validate(*p);
    programs_.push_back(std::move(p));
    return static_cast<int>(programs_.size()) - 1;
  }

  void add_pe(int x, int y, int program, py::array_t<uint16_t> mem,
              std::vector<std::pair<int32_t, int32_t>> data_queue, std::vector<int32_t> active,
              std::vector<int32_t> blocked, uint64_t seed) {
    PEState pe;
    pe.rng.state = seed;
    pe.x = x;
    pe.y = y;
    pe.idx = y * core_.width() + x;
    pe.prog = programs_.at(program).get();
    pe.mem = mem.mutable_data();
    mems_.push_back(mem);
    pe.data_queue = std::move(data_queue);
    for (int t : active) pe.active.set(check_tid(t));
    for (int t : blocked) pe.blocked.set(check_tid(t));
    const int k = static_cast<int>(pes_.size());
    if (pe_of_router_.empty()) {
      pe_of_router_.assign(static_cast<size_t>(core_.width()) * core_.height(), -1);
      core_.listen(true);
    }
    if (pe_of_router_.at(pe.idx) >= 0)
      throw std::invalid_argument("two PEs at " + pe_name(x, y));
    pe_of_router_[pe.idx] = k;
    pes_.push_back(std::move(pe));
    if (awake_.size() * 64 < pes_.size()) awake_.push_back(0);
    awake_[k >> 6] |= uint64_t(1) << (k & 63);
  }

  // A DSR loaded in a top-level comptime block (lower.py: LoweredProgram.dsr_preloads):
  // flags as DSRLOAD's b (dsr_flags).
  void set_dsr(int k, int key, py::array_t<int32_t> pod, int flags) {
    Dsd d;
    std::memcpy(&d, pod.data(), sizeof(Dsd));
    pes_.at(k).dsrs[key] = dsr_slot(d, flags);
  }

  // DSRLOAD's b: bit 0 .save_address, bit 1 .async, bits 2-7 .ut_id + 1, bits 8-15
  // .activate + 1, bits 16-23 .unblock + 1 (0: none; lower.py, dsr_flags).
  static PEState::DsrSlot dsr_slot(const Dsd& d, int flags) {
    PEState::DsrSlot s{d, (flags & 1) != 0 && d.kind == kMem1d};
    s.async_ = (flags & 2) != 0;
    s.ut = ((flags >> 2) & 63) - 1;
    s.activate = ((flags >> 8) & 255) - 1;
    s.unblock = ((flags >> 16) & 255) - 1;
    return s;
  }

  void set_dsd_var(int k, int addr, py::array_t<int32_t> pod) {
    Dsd d;
    std::memcpy(&d, pod.data(), sizeof(Dsd));
    pes_.at(k).dsd_vars[addr] = d;
  }

  // The bytecode comes from lower.py; check its table references once so that a lowering bug
  // is an exception here, never a wild read in the VM.
  static void validate(const Program& p) {
    const auto bad = [](const std::string& what) {
      throw std::invalid_argument("engine bytecode: " + what);
    };
    const auto in = [](int64_t v, size_t n) { return v >= 0 && static_cast<size_t>(v) < n; };
    for (size_t pc = 0; pc < p.code.size(); ++pc) {
      const Ins& i = p.code[pc];
      if (!in(i.op, kNumOp)) bad("unknown op at " + std::to_string(pc));
      bool ok = true;
      switch (i.op) {
        case kPushK: ok = in(i.a, p.consts.size()); break;
        case kDPushK: ok = in(i.a, p.dconsts.size()); break;
        case kJmp: case kJz: case kMapTest: ok = in(i.a, p.code.size()); break;
        case kCall: ok = in(i.a, p.fns.size()); break;
        case kDsdOp: ok = in(i.a, p.calls.size()) && in(p.calls[i.a].op, kNumDsdOps); break;
        case kMapIssue: ok = in(i.a, p.calls.size()) && in(i.b, p.fns.size()); break;
        case kActivate: case kBlock: case kUnblock: ok = in(i.a, kTasks); break;
        case kLoadM: case kStoreM: ok = in(i.b, kWords); break;
        case kPrint: ok = i.a != kPrintString || in(i.b, p.names.size()); break;
        case kChkDef: ok = in(i.b, p.names.size()); break;
        case kFail: ok = in(i.a, p.names.size()); break;
        case kBitcast: ok = in(i.a, kBF16 + 1) && in(i.b, kBF16 + 1); break;
        case kDMod: ok = i.c == -1 || in(i.c, kBF16 + 1); break;
        default: break;
      }
      if (!ok) bad("operand out of range at " + std::to_string(pc));
    }
    for (const DsdCall& c : p.calls) {
      if (c.nops < 1 || c.nops > 4 || !in(c.name, p.names.size())) bad("bad DSD call site");
      for (int32_t t : {c.activate, c.unblock})
        if (t >= kTasks) bad("task ID out of range");
      if (c.ut >= 32) bad("microthread ID out of range");
    }
    for (const FnCode& f : p.fns)
      if (!in(f.entry, p.code.size()) || f.nparams != static_cast<int32_t>(f.param_dsd.size()))
        bad("bad function entry");
    for (const TaskEntry& t : p.tasks)
      if (!in(t.tid, kTasks) || !in(t.fn, p.fns.size()) || !in(t.name, p.names.size()))
        bad("bad task entry");
    for (const auto& e : p.exports)
      if (!in(e.second, p.fns.size())) bad("bad export");
  }

  static int check_tid(int t) {
    if (t < 0 || t >= kTasks) throw std::out_of_range("task ID " + std::to_string(t) + " out of range");
    return t;
  }

  // ---- host commands (simulator.Simulator.launch / stream_h2d / stream_d2h) ----

  int launch(const std::string& name, std::vector<int64_t> args) {
    wake_all();
    for (auto& pe : pes_) {
      touch(pe);
      auto it = pe.prog->exports.find(name);
      if (it == pe.prog->exports.end()) {
        set_error(pe, "PE(" + std::to_string(pe.x) + "," + std::to_string(pe.y) +
                          ") does not export '" + name + "'", -1, true);
        return kError;
      }
      if (!pe.cmd_blocked) ++n_cmd_blocked_;
      pe.cmd_blocked = true;
      // _start_rpc: the RPC runs when the main thread is free.
      auto ctx = std::make_shared<Ctx>();
      ctx->name = launch_name(*pe.prog, name);
      ctx->ready_at = cycle();
      const FnCode& fn = pe.prog->fns[it->second];
      enter(*pe.prog, *ctx, it->second);
      for (int k = 0; k < fn.nparams && k < static_cast<int>(args.size()); ++k)
        ctx->locals[ctx->frames.back().slots + k].i = args[k];
      if (pe.main && !pe.main->done) {
        ctx->wait = kWaitMain;
        ctx->prev = pe.main;
        pe.micro.push_back(ctx);
      } else {
        ctx->main = true;
        pe.main = ctx;
      }
    }
    int st = run_until([this] { return n_cmd_blocked_ == 0; },
                       "running launch('" + name + "')");
    if (st != kOk) return st;
    int64_t target = 0;
    for (auto& pe : pes_) target = std::max(target, pe.unblock_time);
    return advance_to(target);
  }

  // simulator.Simulator.stream_h2d: the command ends when the host has sent everything; what
  // waits in the buffer columns is delivered while later commands run.
  int stream_h2d(int color, std::vector<int32_t> pes, std::vector<std::vector<uint32_t>> data,
                 int64_t rate_num, int64_t rate_den, int64_t buffer_wavelets) {
    auto pump = std::make_shared<H2D>();
    pump->color = color;
    pump->pes = std::move(pes);
    pump->data = std::move(data);
    pump->credit = Credit(rate_num, rate_den, pump->pes.size());
    pump->capacity = buffer_wavelets;
    pump->init();
    size_t total = 0;
    for (auto& r : pump->data) total += r.size();
    h2d_.push_back(pump);
    int st = run_until([&pump] { return pump->sent_all(); },
                       "streaming " + std::to_string(total) +
                           " wavelet(s) to the device on color " + std::to_string(color));
    if (st != kOk) h2d_.erase(std::remove(h2d_.begin(), h2d_.end(), pump), h2d_.end());
    return st;
  }

  py::tuple stream_d2h(int color, int queue, std::vector<int32_t> pes, int count,
                       int64_t rate_num, int64_t rate_den) {
    D2H pump{color, queue, std::move(pes), count, {}, {}, {}};
    pump.credit = Credit(rate_num, rate_den, pump.pes.size());
    pump.got.assign(pump.pes.size(), 0);
    pump.out.assign(pump.pes.size() * static_cast<size_t>(count), 0);
    d2h_ = &pump;
    int st = run_until([&pump] {
      for (int g : pump.got) if (g < pump.count) return false;
      return true;
    }, "receiving " + std::to_string(count) + " wavelet(s) per PE on D2H color " +
           std::to_string(color));
    d2h_ = nullptr;
    py::array_t<uint32_t> out({static_cast<py::ssize_t>(pump.pes.size()),
                               static_cast<py::ssize_t>(count)});
    std::copy(pump.out.begin(), pump.out.end(), out.mutable_data());
    return py::make_tuple(st, out);
  }

  // simulator.Simulator.advance_to
  int advance_to(int64_t target) {
    try {
      while (cycle() < target) {
        if (core_.idle()) {
          int64_t t = pending_time();
          bool nothing_now = n_sleep_runnable_ == 0;
          for_each_awake([&](int k) {
            if (nothing_now && !pes_[k].main && runnable(pes_[k], nullptr)) nothing_now = false;
          });
          if (nothing_now && (t < 0 || t > target)) {
            skip(target - cycle());
            break;
          }
        }
        step();
      }
    } catch (const EngineError& e) {
      return error_status(e);
    } catch (const FabricException& e) {
      error_ = e.what();
      return kFabricError;
    }
    return kOk;
  }

  // ---- state for Python (reports, counters) ----

  int64_t cycle() const { return core_.cycle(); }
  // PE visits that found something to do so far (a measure of the work, for tests: a PE
  // asleep, or awake with nothing to do, is not counted).
  int64_t visits() const { return visits_; }

  py::tuple last_error() const {
    return py::make_tuple(error_, error_pe_, error_task_, error_node_, error_cycle_,
                          error_semantic_);
  }

  // pe.PE.describe_wait
  std::string describe(int k) const {
    const PEState& pe = pes_.at(k);
    std::vector<std::string> parts;
    const auto desc = [&](const Ctx& c) -> std::string {
      switch (c.wait) {
        case kWaitIq: return msg_wait_iq(std::to_string(c.wq));
        case kWaitOq: return msg_wait_oq(std::to_string(c.wq), std::to_string(c.wcolor));
        case kWaitMain: return msg_wait_main();
        case kWaitUt: return msg_wait_ut(std::to_string(c.wq));
        case kWaitFifoPop: return msg_wait_fifo_pop(std::to_string(c.wq));
        case kWaitFifoPush: return msg_wait_fifo_push(std::to_string(c.wq));
        default: return "time";
      }
    };
    if (pe.main && !pe.main->done)
      parts.push_back(msg_task_waits(pe.prog->names[pe.main->name], desc(*pe.main)));
    for (auto& m : pe.micro)
      if (!m->done)
        parts.push_back(msg_async_waits(pe.prog->names[m->name], desc(*m)));
    if (pe.cmd_blocked)
      parts.push_back(msg_cmd_blocked());
    std::string ba;
    for (int t = 0; t < kTasks; ++t)
      if (pe.active.get(t) && pe.blocked.get(t)) ba += (ba.empty() ? "" : ", ") + std::to_string(t);
    if (!ba.empty()) parts.push_back(msg_blocked_active(ba));
    std::string out;
    for (size_t k2 = 0; k2 < parts.size(); ++k2) out += (k2 ? "; " : "") + parts[k2];
    return out;
  }

  // Host streams still pending (during a run, or when the last run stopped with an error).
  // collectives.waiting: lines on which not every PE has called yet.
  std::vector<std::string> collective_waits() const {
    static const char* const names[] = {"broadcast", "scatter", "gather", "reduce_fadds"};
    static_assert(sizeof(names) / sizeof(names[0]) == kNumCollOp);
    std::vector<std::string> out;
    for (const auto& kv : lines_) {   // in creation order, as Python's dict
      const int axis = static_cast<int>(kv.first >> 32), idx = static_cast<int>(kv.first & 0xFFFFFFFF);
      const int n = axis == 0 ? core_.width() : core_.height();
      std::vector<bool> have(n, false);
      for (auto& c : kv.second.calls) have[c.first] = true;
      std::string missing;
      int shown = 0;
      for (int p = 0; p < n && shown < 8; ++p)
        if (!have[p]) { missing += (shown++ ? ", " : "") + std::to_string(p); }
      out.push_back(msg_collective_waits(names[kv.second.calls.front().second.op],
                                         axis == 0 ? "row" : "column", std::to_string(idx),
                                         std::to_string(kv.second.calls.size()),
                                         std::to_string(n), missing));
    }
    return out;
  }

  std::vector<std::string> host_io_waits() const {
    if (h2d_.empty() && !d2h_) return error_io_;
    std::vector<std::string> out;
    for (const auto& p : h2d_) {
      std::string s;
      int shown = 0, left = 0;
      for (size_t k = 0; k < p->pes.size(); ++k) {
        const size_t n = p->data[k].size() - p->pos[k];
        if (!n) continue;
        if (left++ < 6) s += (shown++ ? ", " : "") + msg_h2d_item(std::to_string(n), xy_tuple(p->pes[k]));
      }
      out.push_back(msg_h2d_waits(std::to_string(p->color), s + (left > 6 ? " ..." : "")));
    }
    if (d2h_) {
      std::string s;
      int shown = 0, left = 0;
      for (size_t k = 0; k < d2h_->pes.size(); ++k) {
        const int n = d2h_->count - d2h_->got[k];
        if (!n) continue;
        if (left++ < 6) s += (shown++ ? ", " : "") + msg_d2h_item(std::to_string(n), xy_tuple(d2h_->pes[k]));
      }
      out.push_back(msg_d2h_waits(std::to_string(d2h_->color), s + (left > 6 ? " ..." : "")));
    }
    return out;
  }

  py::dict stats() {
    settle_all();
    const py::ssize_t n = static_cast<py::ssize_t>(pes_.size());
    py::array_t<int64_t> busy(n), stall(n), tasks(n), unblock(n), live(n);
    for (py::ssize_t k = 0; k < n; ++k) {
      live.mutable_data()[k] = pes_[k].live;
      busy.mutable_data()[k] = pes_[k].busy;
      stall.mutable_data()[k] = pes_[k].stall;
      tasks.mutable_data()[k] = pes_[k].tasks_run;
      unblock.mutable_data()[k] = pes_[k].unblock_time;
    }
    py::dict d;
    d["busy"] = busy;
    d["stall"] = stall;
    d["tasks_run"] = tasks;
    d["unblock_time"] = unblock;
    d["live"] = live;
    return d;
  }

  // progress(what, cycles so far) is called every few thousand simulated cycles (None: off).
  void set_progress(py::object progress) { progress_ = std::move(progress); }

  // Trace spans and <simprint> lines since the last call (see spans_ / prints_).
  py::tuple take_events() {
    py::list spans, prints;
    for (auto& sp : spans_) spans.append(py::make_tuple(sp.pe, sp.name, sp.cat, sp.start, sp.end, sp.n));
    for (auto& pr : prints_)
      prints.append(py::make_tuple(std::get<0>(pr), std::get<1>(pr), py::bytes(std::get<2>(pr))));
    spans_.clear();
    prints_.clear();
    return py::make_tuple(spans, prints);
  }

  // The indices of the PEs that changed since the last call (after stats(), which brings
  // the sleeping PEs' counters up to date), in no particular order.
  py::array_t<int32_t> take_dirty() {
    py::array_t<int32_t> out(static_cast<py::ssize_t>(dirty_.size()));
    std::copy(dirty_.begin(), dirty_.end(), out.mutable_data());
    for (int32_t k : dirty_) pes_[k].dirty = false;
    dirty_.clear();
    return out;
  }

  // Every PE's task table at once: active and blocked bits (two 64-bit words per PE, task
  // IDs 0..63 then 64..127) and whether it still blocks the host's command stream.
  py::tuple task_states() const {
    const py::ssize_t n = static_cast<py::ssize_t>(pes_.size());
    py::array_t<uint64_t> active({n, py::ssize_t(2)}), blocked({n, py::ssize_t(2)});
    py::array_t<bool> cmd(n);
    for (py::ssize_t k = 0; k < n; ++k) {
      const PEState& pe = pes_[k];
      for (int w = 0; w < 2; ++w) {
        active.mutable_data()[2 * k + w] = pe.active.w[w];
        blocked.mutable_data()[2 * k + w] = pe.blocked.w[w];
      }
      cmd.mutable_data()[k] = pe.cmd_blocked;
    }
    return py::make_tuple(active, blocked, cmd);
  }

  py::tuple task_state(int k) const {
    const PEState& pe = pes_.at(k);
    std::vector<int> a, b;
    for (int t = 0; t < kTasks; ++t) {
      if (pe.active.get(t)) a.push_back(t);
      if (pe.blocked.get(t)) b.push_back(t);
    }
    return py::make_tuple(a, b, pe.cmd_blocked);
  }

 private:
  // simulator._Credit: the memcpy channels' rate as an exact token bucket.
  struct Credit {
    int64_t num = 1, den = 1, cap = 1, have = 0;
    Credit() = default;
    Credit(int64_t n, int64_t d, size_t pes)
        : num(n), den(d), cap(d * static_cast<int64_t>(std::max<size_t>(1, pes)) + n) {}
    bool accrue() {
      if (have >= cap) return false;
      have = std::min(have + num, cap);
      return true;
    }
    bool take() {
      if (have < den) return false;
      have -= den;
      return true;
    }
  };
  // simulator._H2DPump
  struct H2D {
    int color = 0;
    std::vector<int32_t> pes;
    std::vector<std::vector<uint32_t>> data;
    std::vector<size_t> pos, sent;                  // delivered; left the host
    std::unordered_map<int, int64_t> buffered;      // per PE row
    int64_t capacity = 0;                           // buffer wavelets per PE row
    Credit credit;
    size_t unsent = 0, undelivered = 0;             // PEs with wavelets still to send / deliver
    size_t first = 0;                               // PEs before it have been sent everything
    void init() {
      pos.assign(pes.size(), 0);
      sent.assign(pes.size(), 0);
      for (auto& r : data)
        if (!r.empty()) ++unsent;
      undelivered = unsent;
    }
    bool sent_all() const { return unsent == 0; }
    bool delivered() const { return undelivered == 0; }
    void note_sent(size_t k) {
      if (++sent[k] == data[k].size()) --unsent;
    }
    void note_delivered(size_t k) {
      if (++pos[k] == data[k].size()) --undelivered;
    }
  };
  struct D2H {
    int color, queue;
    std::vector<int32_t> pes;
    int count;
    std::vector<int> got;
    std::vector<uint32_t> out;
    Credit credit;
  };

  std::string xy_tuple(int k) const {   // as Python prints the tuple (x, y)
    return "(" + std::to_string(pes_[k].x) + ", " + std::to_string(pes_[k].y) + ")";
  }

  int32_t launch_name(Program& p, const std::string& name) {
    const std::string full = name + " (launch)";
    for (size_t k = 0; k < p.names.size(); ++k)
      if (p.names[k] == full) return static_cast<int32_t>(k);
    p.names.push_back(full);
    return static_cast<int32_t>(p.names.size()) - 1;
  }

  void set_error(const PEState& pe, const std::string& msg, int32_t node, bool bare = false,
                 bool semantic = false) {
    error_ = msg;
    error_semantic_ = semantic;
    error_pe_ = bare ? -1 : static_cast<int32_t>(&pe - pes_.data());
    error_task_ = pe.task_name >= 0 ? pe.prog->names[pe.task_name] : "-";
    error_node_ = node;
    error_cycle_ = cycle();
  }

  int error_status(const EngineError& e) {
    if (cur_pe_) {
      set_error(*cur_pe_, e.msg, e.node, false, e.semantic);
    } else {                           // (no PE was running: a bare message)
      error_ = e.msg;
      error_pe_ = -1;
    }
    return kError;
  }

  // ---- the cycle loop (simulator.Simulator._run_loop / step / pending_time) ----

  template <class Done>
  int run_until(Done done, const std::string& what) {
    error_io_.clear();
    const int64_t start = cycle();
    int64_t hops = core_.hops();
    try {
      while (!done()) {
        if (cycle() - start > max_cycles_) {
          error_ = msg_max_cycles(what, std::to_string(max_cycles_));
          error_io_ = host_io_waits();
          return kMaxCycles;
        }
        if (++polls_ % 4096 == 0) poll(what, cycle() - start);
        const bool progressed = step();
        const int64_t new_hops = core_.hops();
        if (progressed || new_hops != hops) {
          hops = new_hops;
          continue;
        }
        if (done()) break;
        const int64_t t = pending_time();
        if (t >= 0) {
          if (core_.idle() && t > cycle() + 1) skip(t - cycle() - 1);
          continue;
        }
        if (!core_.idle() && !core_.stuck()) continue;
        error_ = msg_deadlock(std::to_string(cycle()), what);
        error_io_ = host_io_waits();
        return kDeadlock;
      }
    } catch (const EngineError& e) {
      return error_status(e);
    } catch (const FabricException& e) {
      error_ = e.what();
      error_io_ = host_io_waits();
      return kFabricError;
    }
    return kOk;
  }

  // pe.PE.cost: time passes on this PE's context; a context that never waits for the fabric
  // never yields, so an endless loop stops here (pe.runaway_message).
  void charge(PEState& pe, int64_t cycles, int64_t now) const {
    if (running_ && running_->micro_async) steal(pe, pe.time, cycles);
    pe.time += cycles;
    pe.busy += cycles;
    if (pe.time - now > max_cycles_)
      throw EngineError{msg_runaway(std::to_string(max_cycles_)), -1};
  }

  // pe.PE.steal: an async op computing from `start` on takes the datapath from the main
  // thread if the main thread's clock has passed `start`, delaying it by as much.
  static void steal(PEState& pe, int64_t start, int64_t cycles) {
    if (pe.main) {
      Ctx& m = *pe.main;
      if ((m.done || m.wait == kNoWait) && m.ready_at > start) m.ready_at += cycles;
    } else if (pe.main_free_at > start) {
      pe.main_free_at += cycles;
    }
  }

  // Simulator._skip: n cycles pass without stepping.
  void skip(int64_t n) {
    // Sleeping PEs are owed these cycles as live (not as stall: no context is resumed in a
    // skipped cycle) when they wake; skips_ remembers them for settle().
    for_each_awake([&](int k) {
      PEState& pe = pes_[k];
      if (pe.main || !pe.micro.empty()) {
        pe.live += n;
        touch(pe);
      }
    });
    if (n > 0) {
      const int64_t before = skips_.empty() ? 0 : skips_.back().cum + skips_.back().n;
      skips_.push_back(Skip{cycle(), n, before});
    }
    core_.advance_clock(n);
  }

  // Every few thousand cycles: let Python handle signals (Ctrl-C raises KeyboardInterrupt out
  // of the run) and update the progress bar.
  void poll(const std::string& what, int64_t cycles) {
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (!progress_.is_none()) progress_(what, cycles);
  }

  // simulator._H2DPump.__call__: the buffers deliver one wavelet per PE, then the host sends
  // (into the buffers, or straight into the PE's queue without buffer columns).
  // The loops skip what cannot change the outcome (so a cycle costs about the wavelets it
  // moves, not the PEs of the stream): without buffers nothing is buffered; PEs before
  // `first` have been sent everything; once the credit cannot pay for a wavelet no later PE
  // can take one in this cycle.
  bool pump_h2d(H2D& p) {
    bool moved = p.credit.accrue();
    if (p.capacity > 0) {
      for (size_t k = 0; k < p.pes.size(); ++k) {
        const int i = pes_[p.pes[k]].idx;
        if (p.pos[k] < p.sent[k] && core_.oq_free_at(i, 0) > 0) {
          core_.ce_send_at(i, 0, p.color, p.data[k][p.pos[k]]);
          p.note_delivered(k);
          --p.buffered[pes_[p.pes[k]].y];
          moved = true;
        }
      }
    }
    while (p.first < p.pes.size() && p.sent[p.first] == p.data[p.first].size()) ++p.first;
    for (size_t k = p.first; k < p.pes.size() && p.credit.have >= p.credit.den; ++k) {
      if (p.sent[k] == p.data[k].size()) continue;
      const int i = pes_[p.pes[k]].idx;
      if (p.capacity == 0) {
        if (core_.oq_free_at(i, 0) > 0 && p.credit.take()) {
          core_.ce_send_at(i, 0, p.color, p.data[k][p.pos[k]]);
          p.note_delivered(k);
          p.note_sent(k);
          moved = true;
        }
      } else {
        int64_t& b = p.buffered[pes_[p.pes[k]].y];
        if (b < p.capacity && p.credit.take()) {
          p.note_sent(k);
          ++b;
          moved = true;
        }
      }
    }
    return moved;
  }

  // One cycle (simulator.Simulator.step). Only awake PEs are visited: a PE left in a state
  // that only an outside event can change goes to sleep (see sleep()) until then, so a PE
  // waiting for the fabric, for time or for nothing at all costs nothing per cycle.
  bool step() {
    bool progressed = false;
    const int64_t now = cycle();
    for (auto& pump : h2d_) progressed |= pump_h2d(*pump);
    if (!h2d_.empty())
      h2d_.erase(std::remove_if(h2d_.begin(), h2d_.end(),
                                [](const std::shared_ptr<H2D>& p) { return p->delivered(); }),
                 h2d_.end());
    if (d2h_) {
      progressed |= d2h_->credit.accrue();
      for (size_t k = 0; k < d2h_->pes.size(); ++k) {
        const int i = pes_[d2h_->pes[k]].idx;
        if (d2h_->got[k] < d2h_->count && core_.iq_count_at(i, d2h_->queue) > 0 &&
            d2h_->credit.take()) {
          wake(d2h_->pes[k]);
          d2h_->out[k * d2h_->count + d2h_->got[k]++] = core_.ce_recv_at(i, d2h_->queue);
          progressed = true;
        }
      }
    }
    while (!timers_.empty() && timers_.top().t <= now) {
      const int k = timers_.top().k;
      timers_.pop();
      wake(k);
    }
    while (!arrivals_.empty() && arrivals_.front().first <= now) {
      const int k = arrivals_.front().second;
      arrivals_.pop_front();
      wake(k);
    }
    {
      StepGuard guard(*this);
      // In PE order, re-reading the bitmap: a PE woken during the cycle (a collective's
      // callback) further on is visited in this cycle, as the full loop would.
      for (size_t w = 0; w < awake_.size(); ++w) {
        uint64_t seen = 0;
        for (;;) {
          const uint64_t bits = awake_[w] & ~seen;
          if (!bits) break;
          const int b = __builtin_ctzll(bits);
          seen |= uint64_t(1) << b;
          visit_pos_ = static_cast<int>(w * 64 + b);
          progressed |= visit(pes_[visit_pos_], now);
        }
      }
    }
    try {
      core_.tick();
    } catch (const FabricException&) {
      settle_visited(std::numeric_limits<int>::max());   // (StepGuard: the whole cycle passed)
      throw;
    }
    // simulator.Simulator.step: a teardown command activates the teardown task (kind 3,
    // ptypes[0] its color) of the PE whose router it passed.
    auto& tds = core_.teardown_events();
    if (!tds.empty()) {
      for (const auto& [when, router, color] : tds) {
        const int k = pe_of_router_[router];
        if (k >= 0) activate_handler(k, color);
      }
      tds.clear();
    }
    // simulator.Simulator.step: a flushed output queue that is empty runs its handler.
    if (!flushing_.empty()) {
      std::sort(flushing_.begin(), flushing_.end());
      std::vector<int> keep;
      for (int k : flushing_) {
        PEState& pe = pes_[k];
        for (int q = 0; q < 32; ++q) {
          if (!(pe.flush_armed >> q & 1) || core_.oq_count_at(pe.idx, q) != 0) continue;
          pe.flush_armed &= ~(1u << q);
          activate_handler(k, 32 + q);   // (builtins.EMPTY_QUEUE_HANDLER_KEY + q)
        }
        if (pe.flush_armed) keep.push_back(k);
      }
      flushing_.swap(keep);
    }
    auto& events = core_.ce_events();
    if (!events.empty()) {
      const int64_t t = cycle();
      for (const auto& [when, router] : events) {
        const int k = pe_of_router_[router];
        if (k < 0) continue;
        if (when <= t) {
          wake(k);
        } else if (arrivals_.empty() || arrivals_.back().first <= when) {
          arrivals_.emplace_back(when, k);   // (one latency: they come in time order)
        } else {
          timers_.push(Timer{when, k});
        }
      }
      events.clear();
    }
    if (skips_.size() > (1u << 16)) settle_all();
    return progressed;
  }

  // The teardown task of PE k, if its handler is for `key` (a color, or 32 + an output queue
  // for the empty-queue handler; its ptypes[0]): activated, the PE woken.
  void activate_handler(int k, int key) {
    PEState& pe = pes_[k];
    for (const TaskEntry& te : pe.prog->tasks)
      if (te.kind == kTaskTeardown && !te.ptypes.empty() && te.ptypes[0] == key) {
        wake(k);
        pe.active.set(te.tid);
      }
  }

  // The body of step() for one PE; false: nothing happened on it (it is put to sleep).
  bool visit(PEState& pe, int64_t now) {
    cur_pe_ = &pe;   // (sleep's task check may raise a control-wavelet error for this PE)
    if (!pe.main && pe.micro.empty() && !pe.active.any() && pe.timed.empty()) {
      bool data = false;
      for (auto& dq : pe.data_queue)
        if (core_.iq_count_at(pe.idx, dq.second) > 0) { data = true; break; }
      // simulator.Simulator.step: a PE with control tasks also looks at every queue.
      const int nq = std::min(wse2_ ? 32 : 8, core_.n_iq());
      for (int q = 0; pe.prog->has_control && !data && q < nq; ++q)
        if (core_.iq_count_at(pe.idx, q) > 0) data = true;
      if (!data) {
        sleep(pe, now);
        return false;
      }
    }
    bool progressed = false;
    ++visits_;
    cur_pe_ = &pe;
    touch(pe);
    if (pe.main || !pe.micro.empty()) ++pe.live;
    if (!pe.timed.empty()) {
      bool due = false;
      for (auto& t : pe.timed)
        if (t.cycle <= now) {
          if (t.unblock) pe.blocked.clear(t.tid);
          else pe.active.set(t.tid);
          due = true;
        }
      if (due) {
        pe.timed.erase(std::remove_if(pe.timed.begin(), pe.timed.end(),
                                      [now](const PEState::Timed& t) { return t.cycle <= now; }),
                       pe.timed.end());
        progressed = true;
      }
    }
    bool any_done = false;
    // By index, as Python's list iteration: an RPC running here may append microthreads,
    // which then run in this same cycle.
    for (size_t k = 0; k < pe.micro.size(); ++k) {
      std::shared_ptr<Ctx> m = pe.micro[k];
      progressed |= resume(pe, *m, now);
      any_done |= m->done;
    }
    if (any_done)
      pe.micro.erase(std::remove_if(pe.micro.begin(), pe.micro.end(),
                                    [](const std::shared_ptr<Ctx>& m) { return m->done; }),
                     pe.micro.end());
    if (pe.main && pe.main->done) {
      pe.main_free_at = pe.main->ready_at;
      pe.main.reset();
    }
    if (!pe.main && pe.main_free_at <= now) {
      const int tid = pick_task(pe);
      if (tid >= 0) {
        start_task(pe, tid, now);
        progressed = true;
      }
    }
    if (pe.main) progressed |= resume(pe, *pe.main, now);
    // Whether or not anything happened, the PE sleeps if the state it is left in cannot
    // change by itself at the next cycle (sleep() judges that state, not the visit).
    sleep(pe, now);
    return progressed;
  }

  // simulator.Simulator.pending_time: the awake PEs now, the sleeping ones from what they
  // could do when they fell asleep (which cannot change while they sleep).
  int64_t pending_time() {
    int64_t best = -1;
    const int64_t now = cycle();
    const auto consider = [&](int64_t t) { if (best < 0 || t < best) best = t; };
    while (!pend_.empty()) {
      const Timer top = pend_.top();
      const PEState& pe = pes_[top.k];
      if (!pe.asleep || pe.gen != top.gen) {
        pend_.pop();
        continue;
      }
      if (top.t < now) {    // (not expected) let the full formula decide, awake
        pend_.pop();
        wake(top.k);
        continue;
      }
      consider(top.t);
      break;
    }
    for_each_awake([&](int k) {
      const PEState& pe = pes_[k];
      if (pe.main && !pe.main->done && pe.main->wait == kNoWait && pe.main->ready_at >= now)
        consider(pe.main->ready_at);
      for (auto& m : pe.micro)
        if (!m->done && m->wait == kNoWait && m->ready_at >= now) consider(m->ready_at);
      for (auto& t : pe.timed) consider(t.cycle);
      if (!pe.main && pe.main_free_at >= now && runnable(pe, nullptr)) consider(pe.main_free_at);
    });
    return best;
  }

  // ---- sleeping PEs ----
  //
  // After a visit, a PE whose contexts all wait (for the fabric, or for a later cycle) and
  // that has no task to start is in a state that only an outside event can change: time
  // reaching a context's ready_at, a timed activation or the end of the main thread's last
  // task (timers_), a wavelet becoming readable in one of its input queues or room in an
  // output queue (the fabric core's CE events, arrivals_), a collective's callback or a host
  // command (wake). Until then every visit would only count: live for a PE with a task or
  // async op in flight, stall for each context waiting on the fabric or on another context.
  // settle() adds those counts when the PE wakes (skipped cycles count as live, not as
  // stall, as in skip()), so the counters are exactly those of visiting every PE every cycle.
  // A wake-up that finds nothing to do is harmless (one visit that changes nothing).

  struct Timer {
    int64_t t;
    int32_t k;
    uint32_t gen = 0;
    bool operator>(const Timer& o) const { return t != o.t ? t > o.t : k > o.k; }
  };
  struct Skip { int64_t start, n, cum; };   // cycles start..start+n-1 skipped; cum: before
  // An error in the middle of a cycle leaves the cycle counter where it was. The Python path
  // has then counted that cycle for the PEs it visited before the one that failed (and, for
  // an error of the fabric's tick, for every PE), so sleepers whose turn had passed are owed
  // it too: settle them through cycle() + 1 (the rest settle through cycle() later).
  struct StepGuard {
    Engine& e;
    const int unwinding = std::uncaught_exceptions();
    explicit StepGuard(Engine& en) : e(en) { e.in_step_ = true; e.visit_pos_ = -1; }
    ~StepGuard() {
      if (std::uncaught_exceptions() > unwinding) e.settle_visited(e.visit_pos_);
      e.in_step_ = false;
    }
  };

  // Sleeping PEs at positions below `upto` in the visit order settle through the current
  // cycle, which the visit loop has passed for them.
  void settle_visited(int upto) {
    const int n = std::min<int64_t>(upto, static_cast<int64_t>(pes_.size()));
    for (int k = 0; k < n; ++k)
      if (pes_[k].asleep) settle(pes_[k], cycle() + 1);
  }

  template <class F>
  void for_each_awake(F&& f) const {
    for (size_t w = 0; w < awake_.size(); ++w) {
      uint64_t bits = awake_[w];
      while (bits) {
        f(static_cast<int>(w * 64 + __builtin_ctzll(bits)));
        bits &= bits - 1;
      }
    }
  }

  void sleep(PEState& pe, int64_t now) {
    constexpr int64_t kNever = INT64_MAX;
    int64_t wake_at = kNever, pend = kNever;
    bool stay = false;
    const auto ctx = [&](const Ctx& c) {
      if (c.done) { stay = true; return; }
      if (c.ready_at > now) {
        wake_at = std::min(wake_at, c.ready_at);
        if (c.wait == kNoWait) pend = std::min(pend, c.ready_at);
      } else if (c.wait == kNoWait || (c.prev && c.prev->done) || wait_holds(pe, c)) {
        stay = true;   // it can run at the next cycle
      }
    };
    if (pe.main) ctx(*pe.main);
    for (auto& m : pe.micro) ctx(*m);
    for (auto& t : pe.timed) {
      wake_at = std::min(wake_at, t.cycle);
      pend = std::min(pend, t.cycle);
    }
    const bool run = !pe.main && runnable(pe, nullptr);
    if (run) {
      if (pe.main_free_at <= now) stay = true;
      wake_at = std::min(wake_at, pe.main_free_at);
      pend = std::min(pend, pe.main_free_at);
    }
    if (stay || wake_at <= now) return;
    const int k = static_cast<int>(&pe - pes_.data());
    pe.asleep = true;
    pe.sleep_from = now + 1;
    pe.sleep_live = pe.main || !pe.micro.empty();
    pe.sleep_runnable = run;
    if (run) ++n_sleep_runnable_;
    awake_[k >> 6] &= ~(uint64_t(1) << (k & 63));
    if (wake_at != kNever) timers_.push(Timer{wake_at, k});
    if (pend != kNever) pend_.push(Timer{pend, k, pe.gen});
  }

  // The counters of the cycles from pe.sleep_from up to (not including) `upto`.
  void settle(PEState& pe, int64_t upto) {
    const int64_t n = upto - pe.sleep_from;
    if (n <= 0) return;
    if (pe.sleep_live) {
      pe.live += n;
      touch(pe);
    }
    const auto ctx = [&](const Ctx& c) {
      if (c.done || c.wait == kNoWait) return;
      const int64_t from = std::max(pe.sleep_from, c.ready_at);
      if (upto > from) pe.stall += (upto - from) - (skipped_before(upto) - skipped_before(from));
    };
    if (pe.main) ctx(*pe.main);
    for (auto& m : pe.micro) ctx(*m);
    pe.sleep_from = upto;
  }

  // Cycles before `t` that skip() let pass without a visit (since the last settle_all).
  int64_t skipped_before(int64_t t) const {
    auto it = std::upper_bound(skips_.begin(), skips_.end(), t,
                               [](int64_t v, const Skip& s) { return v <= s.start; });
    if (it == skips_.begin()) return 0;
    --it;
    return it->cum + std::min(it->n, t - it->start);
  }

  void wake(int k) {
    PEState& pe = pes_[k];
    if (!pe.asleep) return;
    // Inside a cycle, a PE whose turn has passed was (as a sleeper) visited in it.
    settle(pe, in_step_ && k < visit_pos_ ? cycle() + 1 : cycle());
    pe.asleep = false;
    ++pe.gen;
    if (pe.sleep_runnable) --n_sleep_runnable_;
    pe.sleep_runnable = false;
    awake_[k >> 6] |= uint64_t(1) << (k & 63);
  }

  // The PEs whose counters or task table changed since Python last read them (sync).
  void touch(PEState& pe) {
    if (pe.dirty) return;
    pe.dirty = true;
    dirty_.push_back(static_cast<int32_t>(&pe - pes_.data()));
  }

  void wake_all() {
    for (size_t k = 0; k < pes_.size(); ++k) wake(static_cast<int>(k));
  }

  // Bring every sleeping PE's counters up to now (between cycles).
  void settle_all() {
    const int64_t now = cycle();
    for (auto& pe : pes_)
      if (pe.asleep) settle(pe, now);
    skips_.clear();
  }

  bool wait_holds(const PEState& pe, const Ctx& c) const {
    switch (c.wait) {
      case kWaitIq: return core_.iq_count_at(pe.idx, c.wq) > 0;
      case kWaitOq: return core_.oq_free_at(pe.idx, c.wq) > 0;
      case kWaitMain: case kWaitUt: return c.prev->done;
      case kWaitFifoPop: case kWaitFifoPush: {
        const auto it = pe.fifos.find(c.wq);
        const int32_t count = it == pe.fifos.end() ? 0 : it->second.second;
        return c.wait == kWaitFifoPop ? count > 0 : count < c.wcolor;
      }
      default: return true;
    }
  }

  // simulator.Simulator._resume
  bool resume(PEState& pe, Ctx& c, int64_t now) {
    if (c.done) return false;
    if (c.prev && c.prev->done) {   // Simulator._resume: starts when c.prev ended
      c.ready_at = std::max(c.ready_at, c.prev->ready_at);
      c.prev.reset();
      c.wait = kNoWait;
    }
    if (c.ready_at > now) return false;
    if (c.wait != kNoWait && !wait_holds(pe, c)) {
      ++pe.stall;
      return false;
    }
    pe.time = std::max(c.ready_at, now);
    if (!c.started) { c.started = true; c.start_time = pe.time; }
    const int32_t prev_name = pe.task_name;
    pe.task_name = c.name;
    running_ = &c;
    run(pe, c, now);
    running_ = nullptr;
    pe.task_name = prev_name;
    if (c.done && trace_)
      spans_.push_back(SpanRec{static_cast<int32_t>(&pe - pes_.data()), pe.prog->names[c.name],
                               c.main ? 0 : 1, c.start_time, pe.time, -1});
    c.ready_at = std::max(c.ready_at, pe.time);
    return true;
  }

  // ---- tasks (pe.PE.runnable_tasks / pick_task / start_task) ----

  int data_queue_of(const PEState& pe, int tid) const {
    for (auto& dq : pe.data_queue)
      if (dq.first == tid) return dq.second;
    return -1;
  }

  // Bound, not blocked, and active (a data task: its queue holds a wavelet).
  bool task_runnable(const PEState& pe, const TaskEntry& t) const {
    if (pe.blocked.get(t.tid)) return false;
    if (t.kind == kTaskData) {
      const int q = data_queue_of(pe, t.tid);
      if (q < 0 || core_.iq_count_at(pe.idx, q) <= 0) return false;
      const auto* w = core_.iq_head_at(pe.idx, q);
      return w && !w->ctrl;
    }
    if (t.kind == kTaskControl) return control_queue(pe, t.tid) >= 0;
    return pe.active.get(t.tid);
  }

  // pe.PE.control_queue: the input queue whose head is a control wavelet for control task
  // tid (64 + its ID), -1 none; a control wavelet naming no bound task is an error.
  int control_queue(const PEState& pe, int tid) const {
    const int nq = wse2_ ? 32 : 8;
    for (int q = 0; q < nq && q < core_.n_iq(); ++q) {
      const auto* w = core_.iq_head_at(pe.idx, q);
      if (!w || !w->ctrl) continue;
      const int key = wse2_ ? core_.iq_color_at(pe.idx, q) : q;
      if (key >= 0 && pe.blocked.get(key)) continue;
      const int n = (w->payload >> 16) & 0x3F;
      bool bound = false;
      for (const TaskEntry& t : pe.prog->tasks) bound |= t.kind == kTaskControl && t.tid == 64 + n;
      if (!bound)
        throw EngineError{"a control wavelet for control task ID " + std::to_string(n) +
                              " heads input queue " + std::to_string(q) +
                              ", but no task is bound to control task ID " + std::to_string(n) +
                              " (what the CE does then is not documented)", -1};
      if (64 + n == tid) return q;
    }
    return -1;
  }

  bool runnable(const PEState& pe, std::vector<int>* out) const {
    for (const TaskEntry& t : pe.prog->tasks) {
      if (!task_runnable(pe, t)) continue;
      if (!out) return true;
      out->push_back(t.tid);
    }
    return out && !out->empty();
  }

  int pick_task(PEState& pe) {
    if (random_order_) {
      std::vector<int> r;
      runnable(pe, &r);
      if (r.empty()) return -1;
      std::sort(r.begin(), r.end());
      return r[pe.rng.below(r.size())];
    }
    int best = -1;
    for (const TaskEntry& t : pe.prog->tasks)
      if (task_runnable(pe, t) && (best < 0 || t.tid < best)) best = t.tid;
    return best;
  }

  void start_task(PEState& pe, int tid, int64_t now) {
    const TaskEntry* te = nullptr;
    for (const TaskEntry& t : pe.prog->tasks) if (t.tid == tid) te = &t;
    auto ctx = std::make_shared<Ctx>();
    ctx->name = te->name;
    enter(*pe.prog, *ctx, te->fn);
    if (te->kind == kTaskData) {
      const uint32_t payload = core_.ce_recv_at(pe.idx, data_queue_of(pe, tid));
      const int base = ctx->frames.back().slots;
      if (te->ptypes.size() == 1) {
        ctx->locals[base] = decode_value(te->ptypes[0], payload);
      } else {
        ctx->locals[base] = decode_value(te->ptypes[0], payload & 0xFFFF);
        ctx->locals[base + 1] = decode_value(te->ptypes[1], payload >> 16);
      }
    } else if (te->kind == kTaskControl) {   // a control task: the wavelet's low 16 bits, if it takes them
      const uint32_t payload = core_.ce_recv_at(pe.idx, control_queue(pe, tid));
      if (!te->ptypes.empty())
        ctx->locals[ctx->frames.back().slots] = decode_value(te->ptypes[0], payload & 0xFFFF);
    } else {
      pe.active.clear(tid);
    }
    ++pe.tasks_run;
    ctx->main = true;
    ctx->ready_at = now + task_start_;
    pe.busy += task_start_;
    pe.main = ctx;
  }

  static void enter(const Program& p, Ctx& c, int fn) {
    // Frames of one context share its stacks; the callee's slots follow the caller's.
    const FnCode& f = p.fns[fn];
    const int32_t slots = static_cast<int32_t>(c.locals.size());
    const int32_t dslots = static_cast<int32_t>(c.dlocals.size());
    c.locals.resize(slots + f.nslots);
    c.dlocals.resize(dslots + f.ndslots);
    c.frames.push_back(Frame{fn, f.entry, slots, dslots});
  }

  // ---- memory (memory.PEMemory, pe.PE.check_access) ----

  static void check_range(int64_t addr, int n) {
    if (addr < 0 || addr + n > kWords)
      throw EngineError{"address " + std::to_string(addr) + " (+" + std::to_string(n) +
                            " words) is outside the PE's 48 KiB (" + std::to_string(kWords) +
                            " words)", -1};
  }
  static Scalar load(const PEState& pe, int t, int64_t addr) {
    const int nw = tc_words(t);
    check_range(addr, nw);
    uint32_t bits = pe.mem[addr];
    if (nw == 2) bits |= static_cast<uint32_t>(pe.mem[addr + 1]) << 16;
    return decode_value(t, bits);
  }
  static void store(PEState& pe, int t, int64_t addr, Scalar v) {
    const int nw = tc_words(t);
    check_range(addr, nw);
    const uint32_t bits = encode_value(t, v);
    pe.mem[addr] = static_cast<uint16_t>(bits & 0xFFFF);
    if (nw == 2) pe.mem[addr + 1] = static_cast<uint16_t>(bits >> 16);
  }
  static const Sym* symbol_at(const PEState& pe, int64_t addr) {
    for (const Sym& s : pe.prog->syms)
      if (s.lo <= addr && addr < s.lo + std::max(1, s.n)) return &s;
    return nullptr;
  }
  // pe.PE.check_access over the addresses first, first + step, ... (n of them) or an explicit list.
  static void check_access(const PEState& pe, const Operand& o, int n, int ew, const char* what,
                           int64_t base, int32_t node) {
    if (n <= 0) return;
    int64_t lo, hi;
    if (o.addrs.empty()) {           // an arithmetic progression: its two ends
      lo = std::min<int64_t>(o.addr(0), o.addr(n - 1));
      hi = std::max<int64_t>(o.addr(0), o.addr(n - 1));
    } else {
      lo = *std::min_element(o.addrs.begin(), o.addrs.begin() + n);
      hi = *std::max_element(o.addrs.begin(), o.addrs.begin() + n);
    }
    const Sym* s = symbol_at(pe, base);
    if (!s)
      throw EngineError{std::string(what) + " has base address " + std::to_string(base) +
                            ", outside every variable", node};
    const int64_t a = s->lo, m = std::max(1, s->n);
    if (lo < a || hi + ew > a + m) {
      int64_t bad = 0;
      for (int i = 0; i < n; ++i) {
        const int64_t x = o.addr(i);
        if (x < a || x + ew > a + m) { bad = x; break; }
      }
      throw EngineError{std::string(what) + " reaches element " + std::to_string((bad - a) / ew) +
                            " of '" + s->name + "', which has " + std::to_string(m / ew) +
                            " element(s): out of bounds", node};
    }
  }

  // ---- DSD operands (dsd.resolve / dsd.apply_index) ----

  Operand resolve(const PEState& pe, const Dsd& d, int32_t node, bool check = true) {
    Operand o;
    {  // dsd.check_extents: u16 extents, at most kMaxDsdElements per mem4d DSD
      static const char* const kn[] = {"mem1d_dsd", "mem4d_dsd", "fabin_dsd", "fabout_dsd", "fifo"};
      const std::string kind = d.kind >= 0 && d.kind < 5 ? kn[d.kind] : "DSD";
      const int nd = d.kind == kMem1d || d.kind == kMem4d ? d.ndim : 1;
      int64_t total = 1;
      for (int k = 0; k < nd; ++k) {
        if (d.ext[k] < 0 || d.ext[k] > 0xFFFF)
          throw EngineError{kind + " extent " + std::to_string(d.ext[k]) +
                                " does not fit the DSD's u16 extent field (0..65535)", node};
        total *= d.ext[k];
      }
      if (total > (int64_t{1} << 20))
        throw EngineError{kind + " has " + std::to_string(total) +
                              " elements, more than the simulator's limit of 1048576 per DSD", node};
      if (d.kind == kMem1d || d.kind == kMem4d) {  // dsd.check_reach
        auto reach = [&](const char* what, int64_t n) {
          if (n > (int64_t{1} << 24) || n < -(int64_t{1} << 24))
            throw EngineError{kind + " " + what + " " + std::to_string(n) +
                                  " reaches beyond the PE's memory", node};
        };
        reach("offset", d.offset);
        for (int k = 0; k < nd; ++k) reach("stride", d.str[k]);
      }
    }
    if (d.kind == kFabin) {
      o.kind = 1;
      o.queue = d.queue;
      o.ut = d.ut;
      o.len = d.ext[0];
      return o;
    }
    if (d.kind == kFifo) {   // dsd.resolve: a FifoOperand (no length of its own)
      o.kind = 4;
      o.abase = d.base;
      o.len = d.ext[0];         // its capacity
      o.ew = tc_words(d.tcode);
      return o;
    }
    if (d.kind == kFabout) {
      o.kind = 2;
      o.queue = d.queue;
      o.ut = d.ut;
      o.color = d.color;
      o.len = d.ext[0];
      o.ctrl = (d.wio & 1) != 0;
      o.queue_color = (d.wio & 2) != 0;
      return o;
    }
    o.kind = 0;
    o.ew = tc_words(d.tcode);
    if (d.ndim == 1) {
      o.len = std::max(0, d.ext[0]);
      o.abase = d.base + d.offset * o.ew;
      o.astep = d.str[0] * o.ew;
    } else {
      int64_t total = 1;
      for (int k = 0; k < d.ndim; ++k) total *= d.ext[k];
      int32_t pos = d.offset;
      int32_t counters[4] = {0, 0, 0, 0};
      for (int64_t m = 0; m < total; ++m) {
        o.addrs.push_back(d.base + pos * o.ew);
        for (int k = 0; k < d.ndim; ++k) {
          if (++counters[k] < d.ext[k]) { pos += d.str[k]; break; }
          counters[k] = 0;
        }
      }
      o.len = static_cast<int32_t>(total);
    }
    o.index = d.wio ? -2 : -1;   // -2: memory operand shifted by .index (wavelet_index_offset)
    const char* what = d.kind == kMem1d ? "mem1d_dsd" : "mem4d_dsd";
    if (check) {
      check_access(pe, o, o.len, o.ew, what, d.base, node);
    } else {
      o.unchecked = what;
      o.dbase = d.base;
    }
    return o;
  }

  // dsd.op_length: the first operand with a length, except that a fabout destination takes
  // its first source's and a fabin source gives its extent before the destination; -1: none
  // has one.
  static int op_length(const Operand* ops, int nops) {
    int first = -1;
    for (int k = 0; k < nops; ++k)
      if (ops[k].has_length()) { first = k; break; }
    if (first < 0) return -1;
    if (ops[0].kind == 2)
      for (int k = 1; k < nops; ++k)
        if (ops[k].has_length()) return ops[k].len;
    if (first == 0)
      for (int k = 1; k < nops; ++k)
        if (ops[k].has_length()) {
          if (ops[k].kind == 1) return ops[k].len;
          break;
        }
    return ops[first].len;
  }

  // dsd.check_first: the deferred bounds check of a memory operand, over its first n elements.
  static void check_first(const PEState& pe, Operand& o, int n, int32_t node) {
    if (o.kind != 0 || !o.unchecked) return;
    check_access(pe, o, std::min(n, o.len), o.ew, o.unchecked, o.dbase, node);
    o.unchecked = nullptr;
  }

  void apply_index(const PEState& pe, Operand& o, int64_t index, int32_t node) {
    if (o.kind == 0 && o.index == -2) {
      const int64_t base = o.len ? o.addr(0) : 0;
      if (o.addrs.empty()) o.abase += static_cast<int32_t>(index * o.ew);
      else for (auto& a : o.addrs) a += static_cast<int32_t>(index * o.ew);
      check_access(pe, o, o.len, o.ew, "DSD shifted by .index", base, node);
    } else if (o.kind == 2) {
      o.index = static_cast<int32_t>(index);
    }
  }

  // A DSD op's fabric access: pe.sync_time, then pe.wait until the queue can serve it.
  // fabric_ready for a FIFO operand: pe.sync_time, then pe.wait until it can pop (input) or
  // push; wq: the buffer's word address, wcolor: its capacity.
  bool fifo_ready(PEState& pe, Ctx& c, const Operand& o, bool input, int64_t now) {
    if (c.phase == 0) {
      c.phase = 1;
      if (pe.time > now) {
        c.ready_at = pe.time;
        return false;
      }
    }
    const auto it = pe.fifos.find(o.abase);
    const int32_t count = it == pe.fifos.end() ? 0 : it->second.second;
    if (input ? count == 0 : count >= o.len) {
      c.wait = input ? kWaitFifoPop : kWaitFifoPush;
      c.wq = o.abase;
      c.wcolor = o.len;
      return false;
    }
    c.wait = kNoWait;
    c.phase = 0;
    return true;
  }

  bool fabric_ready(PEState& pe, Ctx& c, bool input, int q, int color, int64_t now) {
    if (c.phase == 0) {
      c.phase = 1;
      if (pe.time > now) {
        c.ready_at = pe.time;
        return false;
      }
    }
    const bool ok = input ? core_.iq_count_at(pe.idx, q) > 0 : core_.oq_free_at(pe.idx, q) > 0;
    if (!ok) {
      c.wait = input ? kWaitIq : kWaitOq;
      c.wq = q;
      c.wcolor = color;
      return false;
    }
    c.wait = kNoWait;
    c.phase = 0;
    return true;
  }

  // dsd.element_stride: the element stride of evenly stepping memory operands, else
  // kNoStride (one element, a pointer, an uneven mem4d walk).
  static constexpr int64_t kNoStride = INT64_MIN;
  static int64_t element_stride(const Operand& o) {
    if (o.pointer || o.len < 2) return kNoStride;
    int64_t d;
    if (o.addrs.empty()) {
      d = o.astep;
    } else {
      d = int64_t(o.addrs[1]) - o.addrs[0];
      for (size_t k = 1; k + 1 < o.addrs.size(); ++k)
        if (int64_t(o.addrs[k + 1]) - o.addrs[k] != d) return kNoStride;
    }
    return d % o.ew == 0 ? d / o.ew : d;
  }
  // timing.stride_simd: the width a stride allows, 0 for no limit.
  static int stride_simd(int64_t stride) {
    if (stride == kNoStride || stride == 0 || stride == 1) return 0;
    const int64_t m = ((stride % 8) + 8) % 8;
    if (m == 2 || m == 3 || m == 5 || m == 6) return 0;
    return m == 0 ? 1 : m == 4 ? 4 : 2;
  }

  static bool memory_only(const OpState& s, const OpInfo& info) {
    if (s.ops[0].kind != 0) return false;
    for (int j = 0; j < info.nsrc; ++j)
      if (s.ops[1 + j].kind != 0 && s.ops[1 + j].kind != 3) return false;
    return true;
  }
  static Scalar load_unchecked(const PEState& pe, int t, int64_t addr, bool check) {
    if (check) return load(pe, t, addr);
    if (t == kF32) {
      const uint32_t bits = pe.mem[addr] | static_cast<uint32_t>(pe.mem[addr + 1]) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      Scalar v;
      v.f = f;
      return v;
    }
    uint32_t bits = pe.mem[addr];
    if (tc_words(t) == 2) bits |= static_cast<uint32_t>(pe.mem[addr + 1]) << 16;
    return decode_value(t, bits);
  }
  static void store_unchecked(PEState& pe, int t, int64_t addr, Scalar v, bool check) {
    if (check) return store(pe, t, addr, v);
    const uint32_t bits = encode_value(t, v);
    pe.mem[addr] = static_cast<uint16_t>(bits & 0xFFFF);
    if (tc_words(t) == 2) pe.mem[addr + 1] = static_cast<uint16_t>(bits >> 16);
  }

  inline static const std::string kMapName = "map";

  // A scalar operand used as type `want` (dsd.read_elem's scalar case).
  static Scalar as_type(Scalar v, int have, int want) {
    const bool have_f = tc_float(have);
    Scalar r = v;
    if (tc_float(want)) r.f = round_to(want, have_f ? v.f : static_cast<double>(v.i));
    else if (have_f) r.i = static_cast<int64_t>(v.f);
    return r;
  }

  // dsd.read_elem: element i of a source operand as type t (op: the operation, for errors).
  // False: the context must wait for the fabric; the same call resumes it.
  bool read_elem(PEState& pe, Ctx& c, const Operand& o, int i, int t, int64_t now, Scalar& out,
                 const std::string& op, int32_t node) {
    switch (o.kind) {
      case 3: out = as_type(o.value, o.scalar_tc, t); return true;
      case 0: out = load(pe, t, o.addr(i)); return true;
      case 4: {   // dsd.read_elem: pop from the head, waiting while the FIFO is empty
        if (!fifo_ready(pe, c, o, true, now)) return false;
        auto& st = pe.fifos[o.abase];
        out = load(pe, t, o.abase + st.first * o.ew);
        st.first = (st.first + 1) % o.len;
        --st.second;
        return true;
      }
      case 1: {
        if (!fabric_ready(pe, c, true, o.queue, 0, now)) return false;
        if (core_.iq_head_at(pe.idx, o.queue)->ctrl)
          throw EngineError{"a control wavelet heads input queue " + std::to_string(o.queue) +
                                " (control wavelets read by a fabin DSD are not supported by waferscale yet)", -1};
        const uint32_t p = core_.ce_recv_at(pe.idx, o.queue);
        out = decode_value(t, tc_words(t) == 2 ? p : (p & 0xFFFF));
        return true;
      }
      default: throw EngineError{"@" + op + " cannot read from a fabout DSD", node};
    }
  }

  // dsd.write_elem: element i of the destination. False: wait for the fabric, as above.
  bool write_elem(PEState& pe, Ctx& c, const Operand& o, int i, int t, Scalar v, int64_t now,
                  const std::string& op, int32_t node) {
    if (o.kind == 0) {
      store(pe, t, o.addr(i), v);
      return true;
    }
    if (o.kind == 4) {   // dsd.write_elem: push at the tail, waiting while the FIFO is full
      if (!fifo_ready(pe, c, o, false, now)) return false;
      auto& st = pe.fifos[o.abase];
      store(pe, t, o.abase + ((st.first + st.second) % o.len) * o.ew, v);
      ++st.second;
      return true;
    }
    if (o.kind != 2) throw EngineError{"@" + op + " cannot write to this operand", node};
    if (!fabric_ready(pe, c, false, o.queue, o.color, now)) return false;
    uint32_t bits = encode_value(t, v);
    if (o.index >= 0) bits = (bits & 0xFFFF) | (static_cast<uint32_t>(o.index & 0xFFFF) << 16);
    const int color = o.queue_color && pe.oq_color[o.queue] >= 0 ? pe.oq_color[o.queue] : o.color;
    core_.ce_send_at(pe.idx, o.queue, color, bits, o.ctrl);
    return true;
  }

  // Pop a call site's operands (pushed in order) and resolve them in source order, the
  // destination first (dsd.resolve): DSDs become memory or fabric operands, `*T` pointers
  // one-element memory operands; scalars keep the value and type they were pushed with.
  // The name of a DSR key (DsrVal.__str__): "dsr_src1 2".
  static std::string dsr_name(int32_t key) {
    static const char* const files[] = {"dest", "src0", "src1"};
    return std::string("dsr_") + files[(key >> 16) & 3] + " " + std::to_string(key & 0xFFFF);
  }

  // dsd.load_dsr: @load_to_dsr of the DSD on top of the DSD stack into DSR `key`.
  void load_dsr(PEState& pe, Ctx& c, int32_t key, int32_t flags, int32_t node) {
    const bool save = (flags & 1) != 0;
    const Dsd d = c.dstack.back();
    c.dstack.pop_back();
    const int file = (key >> 16) & 3;
    const std::string r = dsr_name(key);
    if (d.kind == kFifo) throw EngineError{"loading a FIFO into a DSR is not supported by waferscale yet", node};
    if (file == kDsrDest && d.kind == kFabin)
      throw EngineError{r + " holds a destination operand; a fabin_dsd cannot be one", node};
    if (file == kDsrSrc1 && d.kind == kFabout)
      throw EngineError{r + " holds a source operand; a fabout_dsd cannot be one", node};
    if (save && d.kind == kMem4d)
      throw EngineError{".save_address = true with a mem4d_dsd is not supported by waferscale yet", node};
    pe.dsrs[key] = dsr_slot(d, flags);
  }

  // builtins_rt._same: one task (or microthread) for an action among an op and its DSRs.
  static int32_t same(int32_t mine, int32_t other, const char* what, int32_t node) {
    if (mine >= 0 && other >= 0 && mine != other)
      throw EngineError{std::string("two different ") + what + " (" + std::to_string(mine) + " and " +
                            std::to_string(other) + ") among an operation's options and its DSRs' "
                            "are not supported by waferscale yet", node};
    return mine < 0 ? other : mine;
  }

  // builtins_rt.op_settings: an op's .activate/.unblock/.ut_id merged with those of its DSR
  // operands, visited in `order` (priority: the destination first).
  struct Settings { int32_t activate, unblock, ut; };
  static Settings op_settings(PEState& pe, const DsdCall& call, const int* order) {
    Settings st{call.activate, call.unblock, call.ut};
    for (int j = 0; j < call.nops; ++j) {
      const int k = order[j];
      if (call.kind[k] != 3) continue;
      auto it = pe.dsrs.find(call.tcode[k]);
      if (it == pe.dsrs.end() || !it->second.has_settings()) continue;
      if (!call.async_)
        throw EngineError{"a synchronous DSD operation on a DSR loaded with settings for asynchronous "
                          "operations (.async, .activate, .unblock, .ut_id) is not supported by "
                          "waferscale yet; give the operation .async = true", call.node};
      st.activate = same(st.activate, it->second.activate, "tasks to activate", call.node);
      st.unblock = same(st.unblock, it->second.unblock, "tasks to unblock", call.node);
      st.ut = same(st.ut, it->second.ut, "microthread IDs", call.node);
    }
    return st;
  }

  // dsd.advance_dsrs: after issuing an op over n elements, each DSR operand loaded with
  // .save_address moves n strides on (once per DSR).
  static void advance_dsrs(PEState& pe, const DsdCall& call, int n) {
    for (int k = 0; k < call.nops; ++k) {
      if (call.kind[k] != kOperandDsr) continue;
      bool seen = false;
      for (int j = 0; j < k; ++j) seen |= call.kind[j] == kOperandDsr && call.tcode[j] == call.tcode[k];
      if (seen) continue;
      PEState::DsrSlot& slot = pe.dsrs[call.tcode[k]];
      if (slot.save) slot.dsd.offset += n * slot.dsd.str[0];
    }
  }

  void pop_operands(PEState& pe, Ctx& c, const DsdCall& call, Operand* ops) {
    Dsd dsds[4];
    Scalar scalars[4];
    for (int k = call.nops - 1; k >= 0; --k) {
      if (call.kind[k] == kOperandDsd) { dsds[k] = c.dstack.back(); c.dstack.pop_back(); }
      else if (call.kind[k] != kOperandDsr) { scalars[k] = c.stack.back(); c.stack.pop_back(); }
    }
    for (int k = 0; k < call.nops; ++k) {
      Operand& o = ops[k];
      if (call.kind[k] == kOperandDsr) {   // dsd.dsr_dsd: the DSD the DSR holds
        auto it = pe.dsrs.find(call.tcode[k]);
        if (it == pe.dsrs.end())
          throw EngineError{dsr_name(call.tcode[k]) + " is used before @load_to_dsr loaded a DSD into it",
                            call.node};
        o = resolve(pe, it->second.dsd, call.node, false);
      } else if (call.kind[k] == kOperandDsd) {
        o = resolve(pe, dsds[k], call.node, false);
      } else if (call.kind[k] == kOperandScalar) {
        o.kind = 3;
        o.value = scalars[k];
        o.scalar_tc = call.tcode[k];
      } else {
        o.kind = 0;
        o.pointer = true;
        o.ew = tc_words(call.tcode[k]);
        o.abase = static_cast<int32_t>(scalars[k].i);
        o.len = 1;
      }
    }
  }

  // builtins_rt.run_dsd_op's body
  Step run_op(PEState& pe, Ctx& c, int64_t now) {
    OpState& s = c.op;
    const OpInfo& info = ops_[s.call->op];
    if (!s.started) {
      s.started = true;
      s.start_time = pe.time;
      charge(pe, s.setup + (s.n + s.simd - 1) / s.simd, now);
      if (memory_only(s, info)) {
        // No fabric operand: nothing can stall, so the elements run in one tight loop.
        // Non-pointer operands were bounds-checked at issue; pointers are checked here.
        for (; s.i < s.n; ++s.i) {
          for (int j = 0; j < info.nsrc; ++j) {
            const Operand& o = s.ops[1 + j];
            s.vals[j] = o.kind == 3 ? o.value : load_unchecked(pe, info.src[j], o.addr(s.i), o.pointer);
          }
          store_unchecked(pe, info.dest, s.ops[0].addr(s.i), op_apply(s.call->op, s.vals),
                          s.ops[0].pointer);
        }
      }
    }
    while (s.i < s.n) {
      while (s.j < info.nsrc) {
        if (!read_elem(pe, c, s.ops[1 + s.j], s.i, info.src[s.j], now, s.vals[s.j], info.name,
                       s.call->node))
          return kYield;
        ++s.j;
      }
      if (!s.computed) {
        s.result = op_apply(s.call->op, s.vals);
        s.computed = true;
      }
      if (!write_elem(pe, c, s.ops[0], s.i, info.dest, s.result, now, info.name, s.call->node))
        return kYield;
      ++s.i;
      s.j = 0;
      s.computed = false;
    }
    if (trace_)
      spans_.push_back(SpanRec{static_cast<int32_t>(&pe - pes_.data()), std::string("@") + info.name,
                               2, s.start_time, pe.time, s.n});
    complete(pe, c, s.activate, s.unblock, now);
    return kDone;
  }

  // builtins_rt._complete: an op's .activate / .unblock; an async one at its own time
  // (pe.signal), a synchronous one at once.
  void complete(PEState& pe, const Ctx& c, int32_t activate, int32_t unblock, int64_t now) {
    for (int k = 0; k < 2; ++k) {
      const int32_t tid = k == 0 ? activate : unblock;
      if (tid < 0) continue;
      if (c.micro_async && pe.time > now) pe.timed.push_back({pe.time, tid, k == 1});
      else if (k == 1) pe.blocked.clear(tid);
      else pe.active.set(tid);
    }
  }

  // builtins_rt._microthread: the queue ID of the highest-priority fabric operand (the
  // destination first), or -1.
  static int microthread_of(const Operand* ops, int n) {
    for (int k = 0; k < n; ++k)
      if (ops[k].kind == 1 || ops[k].kind == 2) return ops[k].ut;
    return -1;
  }

  // pe.PE.start_async: a new microthread starts at the issuing context's time, queued behind
  // the unfinished previous op of its microthread.
  void start_async(PEState& pe, const std::shared_ptr<Ctx>& m, int ut) {
    m->ready_at = pe.time;
    m->micro_async = true;
    if (ut >= 0) {
      std::shared_ptr<Ctx>& last = pe.ut_last[ut];
      if (last && !last->done) {
        m->wait = kWaitUt;
        m->wq = ut;
        m->prev = last;
      }
      last = m;
    }
    pe.micro.push_back(m);
  }

  // Issue a DSD operation (builtins_rt.run_dsd_op): resolve operands now, run the body now
  // (synchronous) or on a new microthread (async).
  void issue_op(PEState& pe, Ctx& c, const DsdCall& call, int64_t now) {
    const OpInfo& info = ops_[call.op];
    Operand ops[4];
    int64_t index = 0;
    if (call.has_index) { index = c.stack.back().i; c.stack.pop_back(); }
    pop_operands(pe, c, call, ops);
    static const int in_order[4] = {0, 1, 2, 3};
    const Settings st = op_settings(pe, call, in_order);
    for (int k = 1; k < call.nops; ++k)
      if (ops[k].kind == 3) {   // a scalar source is used at the op's source type, once
        ops[k].value = as_type(ops[k].value, ops[k].scalar_tc, info.src[k - 1]);
        ops[k].scalar_tc = info.src[k - 1];
      }
    // builtins_rt.run_dsd_op: the op's length, the operands' bounds over it, then .index.
    const int n = op_length(ops, call.nops);
    if (n < 0) throw EngineError{std::string("@") + info.name + " needs at least one DSD operand", call.node};
    for (int k = 0; k < call.nops; ++k)
      if (ops[k].kind == 0 && ops[k].has_length() && ops[k].len < n)
        throw EngineError{std::string("@") + info.name + ": operand " + std::to_string(k) +
                              " has " + std::to_string(ops[k].len) + " element(s), fewer than the op's " +
                              std::to_string(n), call.node};
    for (int k = 0; k < call.nops; ++k) check_first(pe, ops[k], n, call.node);
    if (!call.async_)
      for (int k = 0; k < call.nops; ++k)
        if (ops[k].kind == 4)
          throw EngineError{"a synchronous DSD operation on a FIFO (it tests instead of waiting) is "
                            "not supported by waferscale yet; give it .async = true", call.node};
    advance_dsrs(pe, call, n);
    if (call.has_index)
      for (int k = 0; k < call.nops; ++k) apply_index(pe, ops[k], index, call.node);
    Ctx* target = &c;
    std::shared_ptr<Ctx> m;
    if (call.async_) {
      m = std::make_shared<Ctx>();
      m->name = call.name;
      m->async_op = true;
      target = m.get();
    }
    OpState& s = target->op;
    s = OpState{};
    s.call = &call;
    s.activate = st.activate;
    s.unblock = st.unblock;
    // builtins_rt.run_dsd_op's cost: the width (stride-limited) and the setup.
    s.simd = wse2_ ? info.simd2 : info.simd3;
    s.setup = setup_;
    bool fabric = false;
    for (int k = 0; k < call.nops; ++k) {
      if (ops[k].kind == 0) {
        const int limit = stride_simd(element_stride(ops[k]));
        if (limit > 0) s.simd = std::min(s.simd, limit);
      }
      fabric |= ops[k].kind == 1 || ops[k].kind == 2;
    }
    if (fabric) s.setup += fabric_start_;
    if (m) {   // the issuer loads the operands' DSRs; the microthread streams the elements
      charge(pe, s.setup, now);
      s.setup = 0;
    }
    for (int k = 0; k < call.nops; ++k) s.ops[k] = std::move(ops[k]);
    s.n = n;
    target->in_op = true;
    if (m) start_async(pe, m, st.ut >= 0 ? st.ut : microthread_of(s.ops, s.call->nops));
  }

  // builtins_rt._map: resolve the operands now; run the element loop (function `fn`) here or
  // on a new microthread (async).
  void issue_map(PEState& pe, Ctx& c, const Program& P, const DsdCall& call, int fn, int64_t now) {
    MapState ms;
    ms.call = &call;
    ms.ops.resize(call.nops);
    pop_operands(pe, c, call, ms.ops.data());
    for (const Operand& o : ms.ops)
      if (o.kind == 4) throw EngineError{"a FIFO may not be an operand of @map", call.node};
    int order[4];   // op_settings: the output (the last operand, if any) first
    for (int k = 0; k < call.nops; ++k)
      order[k] = call.op ? (k == 0 ? call.nops - 1 : k - 1) : k;
    const Settings st = op_settings(pe, call, order);
    ms.activate = st.activate;
    ms.unblock = st.unblock;
    int n = -1;   // the shortest DSD
    for (const Operand& o : ms.ops)
      if (o.has_length()) n = n < 0 ? o.len : std::min(n, o.len);
    ms.n = n < 0 ? 1 : n;
    for (Operand& o : ms.ops) check_first(pe, o, ms.n, call.node);   // the elements it touches
    advance_dsrs(pe, call, ms.n);
    if (call.async_) {
      auto m = std::make_shared<Ctx>();
      m->name = call.name;
      const int n_ops = static_cast<int>(ms.ops.size());
      // _microthread(cfg, [out, *ins]): the output first (call.op: 1 if there is one)
      int ut = st.ut >= 0 ? st.ut : call.op ? microthread_of(&ms.ops[n_ops - 1], 1) : -1;
      if (ut < 0) ut = microthread_of(ms.ops.data(), call.op ? n_ops - 1 : n_ops);
      m->map = std::move(ms);
      enter(P, *m, fn);
      start_async(pe, m, ut);
    } else {
      if (c.map.call) throw EngineError{"@map inside the function of a @map", call.node};
      c.map = std::move(ms);
      enter(P, c, fn);
    }
  }

  // collectives.call: join the line's rendezvous; the last PE to call moves the data.
  void collective(PEState& pe, const CollCall& call, int axis, int32_t node) {
    static const char* const names[] = {"broadcast", "scatter", "gather", "reduce_fadds"};
    static_assert(sizeof(names) / sizeof(names[0]) == kNumCollOp);
    const int64_t key = (static_cast<int64_t>(axis) << 32) | (axis == 0 ? pe.y : pe.x);
    auto it = std::find_if(lines_.begin(), lines_.end(),
                           [key](const std::pair<int64_t, CollLine>& l) { return l.first == key; });
    if (it == lines_.end()) it = lines_.insert(lines_.end(), {key, CollLine{}});
    CollLine& line = it->second;
    const int pos = axis == 0 ? pe.x : pe.y;
    const std::string ax = axis == 0 ? "x" : "y";
    for (auto& c : line.calls)
      if (c.first == pos)
        throw EngineError{"collectives_2d: " + std::string(names[call.op]) + " called again on the " +
                              ax + " axis before the previous collective of this line completed", node};
    line.calls.emplace_back(pos, call);
    const CollCall& first = line.calls.front().second;
    if (first.op != call.op || first.root != call.root || first.count != call.count)
      throw EngineError{"collectives_2d: PEs of one line disagree: " + std::string(names[first.op]) +
                            "(root=" + std::to_string(first.root) + ", count=" +
                            std::to_string(first.count) + ") vs " + names[call.op] + "(root=" +
                            std::to_string(call.root) + ", count=" + std::to_string(call.count) + ")",
                        node};
    const int n = axis == 0 ? core_.width() : core_.height();
    if (call.root < 0 || call.root >= n)
      throw EngineError{"collectives_2d: root " + std::to_string(call.root) + " is outside the line of " +
                            std::to_string(n) + " PEs", node};
    if (static_cast<int>(line.calls.size()) < n) return;
    std::vector<const CollCall*> calls(n);
    for (auto& c : line.calls) calls[c.first] = &c.second;
    const int count = first.count;
    const CollCall& root = *calls[first.root];
    const auto word = [&](const CollCall& c, int64_t addr) {
      return static_cast<uint32_t>(load(pes_[c.pe], kU32, addr).i);
    };
    const auto put = [&](const CollCall& c, int64_t addr, uint32_t w) {
      Scalar v;
      v.i = w;
      store(pes_[c.pe], kU32, addr, v);
    };
    {   // (memory errors here carry no source location, as on the Python path)
      if (first.op == kBroadcast) {
        std::vector<uint32_t> data(count);
        for (int k = 0; k < count; ++k) data[k] = word(root, root.send + 2 * k);
        for (auto* c : calls) for (int k = 0; k < count; ++k) put(*c, c->recv + 2 * k, data[k]);
      } else if (first.op == kScatter) {
        std::vector<uint32_t> data(static_cast<size_t>(count) * n);
        for (size_t k = 0; k < data.size(); ++k) data[k] = word(root, root.send + 2 * static_cast<int64_t>(k));
        for (int p = 0; p < n; ++p)
          for (int k = 0; k < count; ++k) put(*calls[p], calls[p]->recv + 2 * k, data[p * count + k]);
      } else if (first.op == kGather) {
        std::vector<uint32_t> data;
        for (auto* c : calls) for (int k = 0; k < count; ++k) data.push_back(word(*c, c->send + 2 * k));
        for (size_t k = 0; k < data.size(); ++k) put(root, root.recv + 2 * static_cast<int64_t>(k), data[k]);
      } else {
        std::vector<float> acc(count, 0.0f);
        for (auto* c : calls)
          for (int k = 0; k < count; ++k) {
            const uint32_t w = word(*c, c->send + 2 * k);
            float f;
            std::memcpy(&f, &w, 4);
            acc[k] = acc[k] + f;
          }
        for (int k = 0; k < count; ++k) {
          uint32_t w;
          std::memcpy(&w, &acc[k], 4);
          put(root, root.recv + 2 * k, w);
        }
      }
    }
    int64_t done = 0;
    for (auto* c : calls) done = std::max(done, c->time);
    // TimingModel.collective_cycles
    done += setup_ + fabric_start_ + (n > 1 ? ramp_out_ + (n - 1) * hop_ + ramp_in_ : 0) + count;
    for (auto* c : calls) {
      wake(c->pe);
      pes_[c->pe].timed.push_back({done, c->cb, false});
    }
    lines_.erase(std::find_if(lines_.begin(), lines_.end(),
                              [key](const std::pair<int64_t, CollLine>& l) { return l.first == key; }));
  }

  // builtins_rt's <math> intrinsics (_math1 with its guards), in double before rounding.
  static double math_fn(int f, double x) {
    const auto safe_exp = [](double v) { return v < 709 ? std::exp(v) : INFINITY; };
    switch (f) {
      case kMathExp: return safe_exp(x);
      case kMathSqrt: return x >= 0 ? std::sqrt(x) : std::nan("");
      case kMathLog: return x > 0 ? std::log(x) : (x == 0 ? -INFINITY : std::nan(""));
      case kMathInv: return x != 0 ? 1.0 / x : std::copysign(INFINITY, x);
      case kMathInvsqrt: return x > 0 ? 1.0 / std::sqrt(x) : INFINITY;
      case kMathTanh: return std::tanh(x);
      case kMathSin: return std::isinf(x) ? (x > 0 ? INFINITY : std::nan("")) : std::sin(x);
      case kMathCos: return std::isinf(x) ? (x > 0 ? INFINITY : std::nan("")) : std::cos(x);
      case kMathSig: return 1.0 / (1.0 + safe_exp(-x));
      // <math>'s floor, ceil and abs on a run-time float (modules._math_comptime; lower.py
      // MATH_COMPTIME_FNS): exact, and a NaN or infinity is returned unchanged.
      case kMathFloor: return std::floor(x);
      case kMathCeil: return std::ceil(x);
      case kMathAbs: return std::fabs(x);
    }
    return std::nan("");
  }

  // ---- the VM ----

  void run(PEState& pe, Ctx& c, int64_t now) {
    Program& P = *pe.prog;
    for (;;) {
      if (c.in_op) {
        if (run_op(pe, c, now) == kYield) return;
        c.in_op = false;
        if (c.async_op) { c.done = true; return; }
      }
      if (c.frames.empty()) { c.done = true; return; }
      Frame& f = c.frames.back();
      const Ins in = P.code[f.pc++];
      auto& st = c.stack;
      switch (in.op) {
        case kNop: break;
        case kCost: charge(pe, in.a, now); break;
        case kPushK: st.push_back(P.consts[in.a]); break;
        case kLoadL: st.push_back(c.locals[f.slots + in.a]); break;
        case kStoreL: c.locals[f.slots + in.a] = st.back(); st.pop_back(); break;
        case kLoadM: wrap_node(in.c, [&] { st.push_back(load(pe, in.a, in.b)); }); break;
        case kStoreM: wrap_node(in.c, [&] { store(pe, in.a, in.b, st.back()); }); st.pop_back(); break;
        case kLoadA: {
          const int64_t a = st.back().i;
          st.pop_back();
          wrap_node(in.c, [&] { st.push_back(load(pe, in.a, a)); });
          break;
        }
        case kStoreA: {
          const Scalar v = st.back();
          st.pop_back();
          const int64_t a = st.back().i;
          st.pop_back();
          wrap_node(in.c, [&] { store(pe, in.a, a, v); });
          break;
        }
        case kBounds: {
          // a: size, b: dimension, c: node; the base address of the array is on the stack
          // below the index (for the message), and stays there.
          const int64_t i = st.back().i;
          if (i < 0 || i >= in.a) {
            const int64_t base = st[st.size() - 2].i;
            const Sym* s = symbol_at(pe, base);
            const std::string of = s ? " of '" + s->name + "'" : "";
            throw EngineError{"index " + std::to_string(i) + " out of bounds for dimension " +
                                  std::to_string(in.b) + of + " of size " + std::to_string(in.a),
                              in.c, true};
          }
          break;
        }
        case kPtrIdx: {
          // [*]T indexing: stack [ptr, i] -> address; a: words per element, b: tcode, c: node.
          const int64_t i = st.back().i;
          st.pop_back();
          const int64_t p = st.back().i;
          st.back().i = p + i * in.a;
          Operand o;
          o.kind = 0;
          o.pointer = true;
          o.abase = static_cast<int32_t>(p + i * in.a);
          check_access(pe, o, 1, in.a, "pointer access", p, in.c);
          break;
        }
        case kIBin: {
          const int64_t y = st.back().i;
          st.pop_back();
          int64_t& x = st.back().i;
          x = ibin(in.a, in.b, x, y, in.c);
          break;
        }
        case kFBin: {
          const double y = st.back().f;
          st.pop_back();
          double& x = st.back().f;
          x = fbin(in.a, in.b, x, y);
          break;
        }
        case kICmp: {
          const int64_t y = st.back().i;
          st.pop_back();
          st.back().i = cmp(in.a, st.back().i, y);
          break;
        }
        case kFCmp: {
          const double y = st.back().f;
          st.pop_back();
          const double x = st.back().f;
          st.back().i = cmp(in.a, x, y);
          break;
        }
        case kINeg: st.back().i = wrap_int(in.a, -st.back().i); break;
        case kFNeg: st.back().f = -st.back().f; break;
        case kNot: st.back().i = !st.back().i; break;
        case kBNot: st.back().i = wrap_int(in.a, ~st.back().i); break;
        case kConv: st.back() = conv(in.a, in.b, st.back(), in.c); break;
        case kBitcast:   // a: source tcode, b: target tcode of the same size (builtins._bitcast)
          st.back() = decode_value(in.b, encode_value(in.a, st.back()));
          break;
        case kFitChk: {   // a: target tcode; implicit int coercion must fit (Interp.coerce)
          const int64_t v = st.back().i;
          if (wrap_int(in.a, v) != v)
            throw EngineError{"type '" + tc_name(in.a) + "' cannot represent integer value " +
                                  std::to_string(v), in.c, true};
          break;
        }
        case kJmp: f.pc = in.a; break;
        case kJz: {
          const int64_t v = st.back().i;
          st.pop_back();
          if (!v) f.pc = in.a;
          break;
        }
        case kCall: {
          // Arguments are on the stacks in order; scalar parameters take the callee's first
          // scalar slots, DSD parameters its first DSD slots.
          enter(P, c, in.a);
          const FnCode& fn = P.fns[in.a];
          const Frame nf = c.frames.back();
          int ns = 0, nd = 0;
          for (int32_t d : fn.param_dsd) (d ? nd : ns)++;
          for (int k = fn.nparams - 1; k >= 0; --k) {
            if (fn.param_dsd[k]) {
              c.dlocals[nf.dslots + --nd] = c.dstack.back();
              c.dstack.pop_back();
            } else {
              c.locals[nf.slots + --ns] = st.back();
              st.pop_back();
            }
          }
          break;
        }
        case kMath: {   // a: function (lower.py MATH_FNS), b: result tcode, c: argument tcode
          Scalar& x = st.back();
          x.f = round_to(in.b, math_fn(in.a, tc_float(in.c) ? x.f : static_cast<double>(x.i)));
          break;
        }
        case kMapIssue: issue_map(pe, c, P, P.calls[in.a], in.b, now); break;
        case kMapTest:
          if (c.map.i >= c.map.n) f.pc = in.a;
          break;
        case kMapRead: {   // a: input operand, b: element type; waits: run it again
          Scalar v;
          if (in.c == 1) {   // a pointer for a pointer parameter: its address, unchanged
            v.i = c.map.ops[in.a].abase;
            st.push_back(v);
            break;
          }
          if (!read_elem(pe, c, c.map.ops[in.a], c.map.i, in.b, now, v, kMapName, c.map.call->node)) {
            --f.pc;
            return;
          }
          st.push_back(v);
          break;
        }
        case kMapWrite: {  // a: element type; the value stays on the stack until it is written
          if (!write_elem(pe, c, c.map.ops.back(), c.map.i, in.a, st.back(), now, kMapName,
                          c.map.call->node)) {
            --f.pc;
            return;
          }
          st.pop_back();
          break;
        }
        case kMapStep: ++c.map.i; break;
        case kMapDone:
          complete(pe, c, c.map.activate, c.map.unblock, now);
          c.map = MapState{};
          break;
        case kCollective: {
          // a: operation, b: axis (0 x, 1 y), c: node; stack: root, send[, recv], count, cb
          CollCall call;
          call.cb = static_cast<int32_t>(st.back().i); st.pop_back();
          call.count = static_cast<int32_t>(st.back().i); st.pop_back();
          if (in.a == kBroadcast) {
            call.send = call.recv = static_cast<int32_t>(st.back().i); st.pop_back();
          } else {
            call.recv = static_cast<int32_t>(st.back().i); st.pop_back();
            call.send = static_cast<int32_t>(st.back().i); st.pop_back();
          }
          call.root = static_cast<int32_t>(st.back().i); st.pop_back();
          call.op = in.a;
          call.pe = static_cast<int32_t>(&pe - pes_.data());
          call.time = pe.time;
          collective(pe, call, in.b, in.c);
          break;
        }
        case kPrint: {   // <simprint>: a: PrintKind (string: b its name index)
          std::string text;
          if (in.a == kPrintString) {
            text = P.names[in.b];
          } else {
            const uint64_t v = static_cast<uint64_t>(st.back().i) & (in.a == kPrintU16 ? 0xFFFF : 0xFFFFFFFF);
            st.pop_back();
            text = std::to_string(v);
          }
          pe.print_buffer += text;
          size_t nl;
          while ((nl = pe.print_buffer.find('\n')) != std::string::npos) {
            prints_.emplace_back(static_cast<int32_t>(&pe - pes_.data()), pe.time,
                                 pe.print_buffer.substr(0, nl));
            pe.print_buffer.erase(0, nl + 1);
          }
          break;
        }
        case kAssert: {   // c: node
          const int64_t v = st.back().i;
          st.pop_back();
          if (!v) throw EngineError{"@assert failed", in.c};
          break;
        }
        case kChkDef:   // a: the local's "is set" slot, b: its name, c: node
          if (!c.locals[f.slots + in.a].i)
            throw EngineError{"use of undefined value of '" + P.names[in.b] + "'", in.c, true};
          break;
        case kNoMatch: {   // a switch without else matched nothing; a: 1 for a bool subject
          const int64_t v = st.back().i;
          const std::string what = in.a ? (v ? "true" : "false") : std::to_string(v);
          throw EngineError{"switch on " + what + " matches no case and has no else", in.c, true};
        }
        case kFail:   // a CSL error found at run time: a: its message (a name), c: node;
                      // b = 1: a simulator error ("... at file:line:col", pe.PE.error)
          throw EngineError{P.names[in.a], in.c, in.b != 1};
        case kSwap: std::swap(st[st.size() - 1], st[st.size() - 2]); break;
        case kDup: st.push_back(st.back()); break;
        case kRet: {
          const Frame done = c.frames.back();
          c.frames.pop_back();
          c.locals.resize(done.slots);
          c.dlocals.resize(done.dslots);
          if (c.frames.empty()) { c.done = true; return; }
          break;
        }
        case kPop: st.pop_back(); break;
        case kActivate: pe.active.set(in.a); break;
        case kBlock: pe.blocked.set(in.a); break;
        case kUnblock: pe.blocked.clear(in.a); break;
        case kUnblockCmd:
          if (pe.cmd_blocked) --n_cmd_blocked_;
          pe.cmd_blocked = false;
          pe.unblock_time = pe.time;
          break;
        case kTimestamp: {
          const int64_t a = st.back().i;
          st.pop_back();
          for (int k = 0; k < 3; ++k) {
            Scalar w;
            w.i = (pe.time >> (16 * k)) & 0xFFFF;
            wrap_node(in.c, [&] { store(pe, kU16, a + k, w); });
          }
          break;
        }
        case kDPushK: c.dstack.push_back(P.dconsts[in.a]); break;
        case kDLoadL: c.dstack.push_back(c.dlocals[f.dslots + in.a]); break;
        case kDStoreL: c.dlocals[f.dslots + in.a] = c.dstack.back(); c.dstack.pop_back(); break;
        case kDLoadG: {
          auto it = pe.dsd_vars.find(in.a);
          if (it == pe.dsd_vars.end())
            throw EngineError{"DSD variable '" + P.names[in.b] + "' is read before it is set", in.c};
          c.dstack.push_back(it->second);
          break;
        }
        case kDStoreG: pe.dsd_vars[in.a] = c.dstack.back(); c.dstack.pop_back(); break;
        case kDMod: {
          // a: DMod (the base address pops a scalar); b: node;
          // c (base address): the pointee's element type code, or -1 to keep the DSD's.
          // A run-time offset increment or stride must fit its DSD field (builtins.py,
          // _dsd_mutator: the same error); the length is checked when an op reads the DSD.
          const int64_t v = st.back().i;
          st.pop_back();
          if (in.a == kIncrementOffset && (v < -0x8000 || v > 0x7FFF))
            throw EngineError{"@increment_dsd_offset argument " + std::to_string(v) +
                                  " does not fit the DSD's i16 field (-32768..32767)", in.b};
          if (in.a == kSetStride && (v < -0x80 || v > 0x7F))
            throw EngineError{"@set_dsd_stride argument " + std::to_string(v) +
                                  " does not fit the DSD's i8 field (-128..127)", in.b};
          Dsd& d = c.dstack.back();
          if (in.a == kIncrementOffset) d.offset += static_cast<int32_t>(v);
          else if (in.a == kSetLength) { d.ext[0] = static_cast<int32_t>(v); d.ndim = 1; }
          else if (in.a == kSetStride) d.str[0] = static_cast<int32_t>(v);
          else {
            d.base = static_cast<int32_t>(v);
            d.offset = 0;
            if (in.c >= 0) d.tcode = in.c;
          }
          break;
        }
        case kDsdOp: issue_op(pe, c, P.calls[in.a], now); break;
        case kDsrLoad: load_dsr(pe, c, in.a, in.b, in.c); break;   // a: DSR key, b: dsr_flags, c: node
        case kRouter:   // <tile_config> (builtins_rt._router_config): at the PE's time
          if (pe.time > now) {
            c.ready_at = pe.time;
            --f.pc;
            return;
          }
          if ((in.a >> 5) == 11) {          // encode_output_queue: the queue's color
            pe.oq_color[in.b & 31] = static_cast<int8_t>(in.a & 31);
          } else if ((in.a >> 5) == 12) {   // @queue_flush
            const int k = static_cast<int>(&pe - pes_.data());
            if (!pe.flush_armed) flushing_.push_back(k);
            pe.flush_armed |= 1u << (in.b & 31);
          } else if ((in.a >> 5) != 13) {   // (queue_flush.exit: nothing left to clear)
            try {
              core_.router_config(pe.x, pe.y, in.a >> 5, in.a & 31, in.b);
            } catch (const FabricException& e) {
              throw EngineError{e.what(), in.c};
            }
          }
          break;
        case kDPop: c.dstack.pop_back(); break;
        case kPushXY: { Scalar s; s.i = in.a ? pe.y : pe.x; st.push_back(s); break; }
        default: throw EngineError{"bad instruction " + std::to_string(in.op), -1};
      }
    }
  }

  template <class F>
  static void wrap_node(int32_t node, F&& f) {
    try {
      f();
    } catch (EngineError& e) {
      if (e.node < 0) e.node = node;
      throw;
    }
  }

  static std::string tc_name(int t) {
    static const char* const n[] = {"bool", "i8", "u8", "i16", "u16", "i32", "u32", "f16", "f32", "bf16"};
    return n[t];
  }

  // Interp.binop for fixed-width integers (run-time arithmetic wraps, PEInterp._int_result).
  static int64_t ibin(int op, int t, int64_t x, int64_t y, int32_t node) {
    switch (op) {
      case kAdd: return wrap_int(t, x + y);
      case kSub: return wrap_int(t, x - y);
      case kMul: return wrap_int(t, static_cast<int64_t>(static_cast<uint64_t>(x) * static_cast<uint64_t>(y)));
      case kDiv:
        if (!y) throw EngineError{"division by zero", node, true};
        return wrap_int(t, x / y);
      case kMod:
        if (!y) throw EngineError{"division by zero", node, true};
        return wrap_int(t, x % y);
      case kAnd: return wrap_int(t, x & y);
      case kOr: return wrap_int(t, x | y);
      case kXor: return wrap_int(t, x ^ y);
      case kShl:
        if (y >= tc_bits(t)) throw EngineError{"shift amount " + std::to_string(y) + " is too large for '" + tc_name(t) + "'", node, true};
        return wrap_int(t, static_cast<int64_t>(static_cast<uint64_t>(x) << y));
      case kShr: return y >= 63 ? (x < 0 ? -1 : 0) : (x >> y);
    }
    return 0;
  }

  static double fbin(int op, int t, double x, double y) {
    double r;
    switch (op) {
      case kAdd: r = x + y; break;
      case kSub: r = x - y; break;
      case kMul: r = x * y; break;
      case kDiv:
        if (y == 0.0) r = x != 0 ? std::copysign(INFINITY, x) * std::copysign(1.0, y) : std::nan("");
        else r = x / y;
        break;
      case kMod: r = y != 0 ? std::fmod(x, y) : std::nan(""); break;
      default: r = 0;
    }
    return round_to(t, r);
  }

  template <class V>
  static int64_t cmp(int op, V x, V y) {
    switch (op) {
      case kLt: return x < y;
      case kLe: return x <= y;
      case kGt: return x > y;
      case kGe: return x >= y;
      case kEq: return x == y;
      default: return x != y;
    }
  }

  // builtins.cast_value (@as) between run-time scalar types.
  static Scalar conv(int from, int to, Scalar v, int32_t node) {
    Scalar r;
    if (tc_float(to)) {
      r.f = round_to(to, tc_float(from) ? v.f : static_cast<double>(v.i));
      return r;
    }
    if (to == kBool) {
      r.i = tc_float(from) ? v.f != 0 : v.i != 0;
      return r;
    }
    int64_t x;
    if (tc_float(from)) {
      if (!std::isfinite(v.f)) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s", std::isnan(v.f) ? "nan" : (v.f > 0 ? "inf" : "-inf"));
        throw EngineError{std::string("cannot convert ") + buf + " to '" + tc_name(to) + "'", node, true};
      }
      x = static_cast<int64_t>(v.f);
    } else {
      x = v.i;
    }
    if (wrap_int(to, x) != x)
      throw EngineError{"type '" + tc_name(to) + "' cannot represent integer value " + std::to_string(x), node, true};
    r.i = x;
    return r;
  }

  Core& core_;
  bool wse2_;
  int64_t statement_, branch_, task_start_, setup_, fabric_start_, hop_, ramp_out_, ramp_in_,
      max_cycles_;
  bool random_order_, trace_;
  py::object progress_ = py::none();
  uint64_t polls_ = 0;
  std::vector<OpInfo> ops_;
  // Trace spans (pe, name, category 0 task / 1 async / 2 dsd, start, end, elements) and
  // <simprint> lines (pe, cycle, text), in the order they happened; Python takes them.
  struct SpanRec { int32_t pe; std::string name; int32_t cat; int64_t start, end, n; };
  std::vector<SpanRec> spans_;
  std::vector<std::tuple<int32_t, int64_t, std::string>> prints_;
  std::vector<std::unique_ptr<Program>> programs_;
  std::vector<PEState> pes_;
  std::vector<py::array_t<uint16_t>> mems_;
  PEState* cur_pe_ = nullptr;
  std::vector<int> flushing_;        // PEs with @queue_flush'd output queues (sim.flushing)
  Ctx* running_ = nullptr;      // the context being run (Simulator.running)
  // Sleeping PEs (see sleep()): a bit per awake PE; wake-ups due at a cycle; the pending
  // time of each sleeper (valid while its gen is unchanged); the skipped spans.
  std::vector<uint64_t> awake_;
  std::vector<int32_t> pe_of_router_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_, pend_;
  std::deque<std::pair<int64_t, int32_t>> arrivals_;   // CE events due later, in time order
  std::vector<Skip> skips_;
  std::vector<int32_t> dirty_;
  bool in_step_ = false;
  int visit_pos_ = -1;
  int64_t n_cmd_blocked_ = 0, n_sleep_runnable_ = 0, visits_ = 0;
  // Collectives waiting for the rest of their line: ((axis << 32) | index, line), oldest first.
  std::vector<std::pair<int64_t, CollLine>> lines_;
  std::vector<std::shared_ptr<H2D>> h2d_;   // H2D streams not yet delivered
  D2H* d2h_ = nullptr;
  std::string error_, error_task_;
  std::vector<std::string> error_io_;
  int32_t error_pe_ = -1, error_node_ = -1;
  int64_t error_cycle_ = 0;
  bool error_semantic_ = false;
};
