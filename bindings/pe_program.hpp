// The compiled PE engine's program format: the bytecode that runtime/waferscale/sim/lower.py
// emits (instructions, DSD values, DSD call sites, functions, tasks, symbols). Included by
// pe_engine.hpp. The enums and the Dsd/DsdCall records are in pe_abi.hpp (generated from
// runtime/waferscale/sim/engine_abi.py by setup.py).

// ---- bytecode: enum Op (pe_abi.hpp, from engine_abi.py); the meaning of a, b, c is in the
// VM's cases (pe_engine.hpp) ----
struct Ins {
  int32_t op, a, b, c;
};

// struct Dsd (a resolved DSD value) and struct DsdCall (one DSD-operation call site): their
// fields are engine_abi.RECORDS, generated into pe_abi.hpp.

struct FnCode {
  int32_t entry, nslots, ndslots, nparams;
  std::vector<int32_t> param_dsd;   // per parameter: 1 if it is a DSD (goes to a DSD slot)
};

struct TaskEntry {
  int32_t tid, kind, fn;            // kind: TaskKind
  std::vector<int32_t> ptypes;      // data task parameters (wavelet halves)
  int32_t name;
};

struct Sym {
  int32_t lo, n;                    // words
  std::string name;
};

struct Program {
  std::vector<Ins> code;
  std::vector<Scalar> consts;
  std::vector<Dsd> dconsts;
  std::vector<DsdCall> calls;
  std::vector<FnCode> fns;
  std::vector<TaskEntry> tasks;
  bool has_control = false;         // a control task among them (visit looks at every queue)
  std::unordered_map<std::string, int32_t> exports;
  std::vector<Sym> syms;
  std::vector<std::string> names;
};
