// The compiled PE engine's program format: the bytecode that runtime/waferscale/sim/lower.py
// emits (instructions, DSD values, DSD call sites, functions, tasks, symbols). Included by
// pe_engine.hpp.

// ---- bytecode (lower.py: the Op enum and the meaning of a, b, c) ----
enum Op : int32_t {
  kNop = 0, kCost, kPushK, kLoadL, kStoreL, kLoadM, kStoreM, kLoadA, kStoreA, kBounds,
  kPtrIdx, kIBin, kFBin, kICmp, kFCmp, kINeg, kFNeg, kNot, kBNot, kConv, kJmp, kJz, kCall,
  kRet, kPop, kActivate, kBlock, kUnblock, kUnblockCmd, kTimestamp, kDPushK, kDLoadL,
  kDStoreL, kDLoadG, kDStoreG, kDMod, kDsdOp, kDPop, kPushXY, kFitChk, kSwap, kDup, kMath,
  kMapIssue, kMapTest, kMapRead, kMapWrite, kMapStep, kMapDone, kCollective, kPrint, kAssert,
  kChkDef, kNoMatch, kFail, kBitcast, kDsrLoad, kNumOps
};
enum BinOp : int32_t { kAdd = 0, kSub, kMul, kDiv, kMod, kAnd, kOr, kXor, kShl, kShr };
enum CmpOp : int32_t { kLt = 0, kLe, kGt, kGe, kEq, kNe };

struct Ins {
  int32_t op, a, b, c;
};

// A resolved DSD value (dsd.resolve applied eagerly to the descriptor and its modifiers).
enum DsdKind : int32_t { kMem1d = 0, kMem4d, kFabin, kFabout, kFifo };
struct Dsd {
  int32_t kind, tcode, ndim, wio;   // wio: .wavelet_index_offset
  int32_t base, offset;             // word address of the base; offset in elements
  int32_t ext[4], str[4];
  int32_t queue, color;
  int32_t ut;                       // fabric DSDs: the microthread ID they select
};
constexpr int kDsdInts = 17;

// One DSD-operation call site (lower.py: DsdCallSite).
struct DsdCall {
  int32_t op;                       // index into kOpNames / ops_; @map: 1 if it has an output
  int32_t nops;                     // destination + sources
  int32_t kind[4];                  // operand source: 0 DSD stack, 1 scalar (tcode), 2 pointer,
                                    // 3 a DSR (the DSD it holds; tcode: its key, dsr_key)
  int32_t tcode[4];                 // scalar: its type; pointer: the element type
  int32_t async_, activate, unblock, has_index;
  int32_t node, name;               // error location; context name ("@fmovs")
  int32_t ut;                       // .ut_id, or -1
};
constexpr int kCallInts = 17;

struct FnCode {
  int32_t entry, nslots, ndslots, nparams;
  std::vector<int32_t> param_dsd;   // per parameter: 1 if it is a DSD (goes to a DSD slot)
};

struct TaskEntry {
  int32_t tid, kind, fn;            // kind: 0 local, 1 data, 2 control
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
  std::unordered_map<std::string, int32_t> exports;
  std::vector<Sym> syms;
  std::vector<std::string> names;
};
