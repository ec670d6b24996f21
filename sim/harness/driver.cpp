// preba fast harness: a generic C++ driver around a Verilated model, loaded from Python by ctypes.
//
// The design-specific part (which ports exist, their Verilated member names and widths) is in
// the generated header preba_ports.h; this file only knows "input stream k" and "output stream k".
//
// One cycle, in this order:
//   clk=0; drive each input's valid/payload and each output's ready; eval()   (combinational settle)
//   sample handshakes (valid && ready) on every port: inputs advance, outputs record beat + cycle
//   clk=1; eval()                                                              (the rising edge)
// Trace times: 10*cycle for the low phase, 10*cycle+5 for the rising edge (1 ns units).
//
// Sideband inputs (plain input signals beside an input stream k): driven with value n while
// stream k offers or awaits its beat n (the last value after its final beat), changed only in the
// drive phase, so a beat's handshake always sees its own value.
//
// Backpressure (seeded xorshift64*): an input that is not already offering a beat withholds
// valid with probability p_in this cycle; once valid is up it stays up until the beat is taken
// (the stream protocol forbids dropping valid). Each output's ready is low with probability p_out.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "verilated.h"
#include "preba_ports.h"

#if PREBA_TRACE == 1
#include "verilated_vcd_c.h"
typedef VerilatedVcdC PrebaTrace;
#elif PREBA_TRACE == 2
#include "verilated_fst_c.h"
typedef VerilatedFstC PrebaTrace;
#endif

#define PREBA_ABI 2

namespace {

struct InPort {
    const uint32_t* buf = nullptr;
    uint64_t n = 0;
    uint64_t pos = 0;
    bool valid = false;        // offering buf[pos] this cycle
    uint64_t done_cycle = ~0ull;  // cycle of the last accepted beat
};

struct SbPort {
    const uint32_t* buf = nullptr;
    uint64_t n = 0;
    uint64_t cur = ~0ull;      // index of the value driven now
};

struct OutPort {
    std::vector<uint32_t> words;
    std::vector<uint64_t> cycles;
};

constexpr int kIn = N_IN > 0 ? N_IN : 1;
constexpr int kOut = N_OUT > 0 ? N_OUT : 1;
constexpr int kSb = N_SB > 0 ? N_SB : 1;

struct Sim {
    VerilatedContext* ctx = nullptr;
    Top* top = nullptr;
    InPort in[kIn];
    OutPort out[kOut];
    SbPort sb[kSb];
    uint64_t cycle = 0;
    uint64_t rng = 0;
    uint64_t th_in = 0, th_out = 0;  // withhold when (rand >> 32) < th
    int until_port = -1;
    uint64_t until_n = 0;
    uint64_t idle_limit = 0;         // 0: never stop for idleness
    uint64_t stall_limit = 0;        // 0: never stop for a stall
    uint64_t last_activity = 0;
    uint64_t inputs_left = 0;        // input ports with beats still to send
#ifdef PREBA_TRACE
    PrebaTrace* tfp = nullptr;
    uint64_t tr_start = 0, tr_end = 0;
#endif
};

inline uint32_t rand32(Sim* s) {
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
}

inline void tick_low(Sim* s) {
    s->top->eval();
#ifdef PREBA_TRACE
    if (s->tfp && s->cycle >= s->tr_start && s->cycle < s->tr_end) s->tfp->dump(s->cycle * 10);
#endif
}

inline void tick_high(Sim* s) {
    s->top->eval();
#ifdef PREBA_TRACE
    if (s->tfp && s->cycle >= s->tr_start && s->cycle < s->tr_end) s->tfp->dump(s->cycle * 10 + 5);
#endif
}

}  // namespace

extern "C" {

int preba_abi(void) { return PREBA_ABI; }
int preba_n_in(void) { return N_IN; }
int preba_n_out(void) { return N_OUT; }
int preba_n_sb(void) { return N_SB; }
const char* preba_sb_name(int k) { return SB_NAMES[k]; }
const char* preba_in_name(int k) { return IN_NAMES[k]; }
const char* preba_out_name(int k) { return OUT_NAMES[k]; }
int preba_in_words(int k) { return IN_WORDS[k]; }
int preba_out_words(int k) { return OUT_WORDS[k]; }
int preba_trace_kind(void) {
#ifdef PREBA_TRACE
    return PREBA_TRACE;
#else
    return 0;
#endif
}
int preba_coverage(void) {
#if VM_COVERAGE
    return 1;
#else
    return 0;
#endif
}

// Create a model, hold reset for reset_cycles cycles (valids and readies low), release it.
// trace_path may be NULL; the trace window is [tr_start, tr_end) in post-reset cycles.
void* preba_new(uint64_t seed, double p_in, double p_out, uint32_t reset_cycles,
                const char* trace_path, uint64_t tr_start, uint64_t tr_end) {
    Sim* s = new Sim;
    s->ctx = new VerilatedContext;
    s->ctx->randReset(0);
#ifdef PREBA_TRACE
    if (trace_path) s->ctx->traceEverOn(true);
#endif
    s->top = new Top(s->ctx, "TOP");
    s->rng = seed * 0x9E3779B97F4A7C15ull + 0xD1B54A32D192ED03ull;
    if (!s->rng) s->rng = 1;
    auto th = [](double p) -> uint64_t {
        if (p <= 0) return 0;
        if (p >= 1) return 1ull << 32;
        return (uint64_t)(p * 4294967296.0);
    };
    s->th_in = th(p_in);
    s->th_out = th(p_out);
#ifdef PREBA_TRACE
    if (trace_path) {
        s->top->trace(s->tfp = new PrebaTrace, 99);
        s->tfp->set_time_unit("1ns");
        s->tfp->set_time_resolution("1ns");
        s->tfp->open(trace_path);
        s->tr_start = tr_start;
        s->tr_end = tr_end;
    }
#else
    (void)trace_path; (void)tr_start; (void)tr_end;
#endif
    Top* t = s->top;
    for (int k = 0; k < N_IN; k++) in_valid(t, k, false);
    for (int k = 0; k < N_OUT; k++) out_ready(t, k, false);
    rst_set(t, 1);
    for (uint32_t i = 0; i < reset_cycles; i++) {
        clk_set(t, 0);
        t->eval();
        clk_set(t, 1);
        t->eval();
    }
    rst_set(t, 0);
    clk_set(t, 0);
    t->eval();
    return s;
}

// buf must stay alive until preba_free (Python keeps a reference).
void preba_set_input(void* h, int k, const uint32_t* buf, uint64_t n) {
    Sim* s = (Sim*)h;
    InPort& p = s->in[k];
    if (p.pos < p.n) s->inputs_left--;
    p.buf = buf;
    p.n = n;
    p.pos = 0;
    p.valid = false;
    if (n) s->inputs_left++;
}

// Values of sideband input k, one per beat of the stream it follows (n may be 1: a constant).
// buf must stay alive until preba_free. The first value is driven at once.
void preba_set_sideband(void* h, int k, const uint32_t* buf, uint64_t n) {
    Sim* s = (Sim*)h;
    SbPort& p = s->sb[k];
    p.buf = buf;
    p.n = n;
    p.cur = ~0ull;
    if (n) {
        p.cur = 0;
        sb_set(s->top, k, buf);
        s->top->eval();
    }
}

void preba_set_stop(void* h, int until_port, uint64_t until_n, uint64_t idle_limit,
                    uint64_t stall_limit) {
    Sim* s = (Sim*)h;
    s->until_port = until_port;
    s->until_n = until_n;
    s->idle_limit = idle_limit;
    s->stall_limit = stall_limit;
}

// Run at most max_cycles more cycles. Returns 0 when the budget ran out, 1 when until_n beats
// arrived on until_port, 2 when all inputs were consumed and nothing moved for idle_limit cycles,
// 3 when inputs remain but nothing moved on any port for stall_limit cycles.
int preba_step(void* h, uint64_t max_cycles) {
    Sim* s = (Sim*)h;
    Top* t = s->top;
    const uint64_t th_in = s->th_in, th_out = s->th_out;
    bool out_rdy[kOut];
    for (uint64_t i = 0; i < max_cycles; i++) {
        // drive
        for (int k = 0; k < N_IN; k++) {
            InPort& p = s->in[k];
            if (!p.valid && p.pos < p.n) {
                if (!th_in || ((uint64_t)rand32(s) >= th_in)) {
                    p.valid = true;
                    in_payload(t, k, p.buf + p.pos * IN_WORDS[k]);
                }
            }
            in_valid(t, k, p.valid);
        }
        for (int k = 0; k < N_SB; k++) {
            SbPort& b = s->sb[k];
            if (!b.n) continue;
            uint64_t idx = s->in[SB_FOLLOWS[k]].pos;
            if (idx >= b.n) idx = b.n - 1;
            if (idx != b.cur) {
                b.cur = idx;
                sb_set(t, k, b.buf + idx * SB_WORDS[k]);
            }
        }
        for (int k = 0; k < N_OUT; k++) {
            out_rdy[k] = !th_out || ((uint64_t)rand32(s) >= th_out);
            out_ready(t, k, out_rdy[k]);
        }
        clk_set(t, 0);
        tick_low(s);
        // sample
        bool moved = false;
        for (int k = 0; k < N_IN; k++) {
            InPort& p = s->in[k];
            if (p.valid && in_ready(t, k)) {
                p.valid = false;
                moved = true;
                if (++p.pos == p.n) {
                    p.done_cycle = s->cycle;
                    s->inputs_left--;
                }
            }
        }
        for (int k = 0; k < N_OUT; k++) {
            if (out_rdy[k] && out_valid(t, k)) {
                OutPort& o = s->out[k];
                size_t at = o.words.size();
                o.words.resize(at + OUT_WORDS[k]);
                out_payload(t, k, o.words.data() + at);
                o.cycles.push_back(s->cycle);
                moved = true;
            }
        }
        clk_set(t, 1);
        tick_high(s);
        uint64_t c = s->cycle++;
        if (moved) s->last_activity = c;
        if (s->until_port >= 0 && s->out[s->until_port].cycles.size() >= s->until_n) return 1;
        if (s->idle_limit && !s->inputs_left && c - s->last_activity >= s->idle_limit) return 2;
        if (s->stall_limit && s->inputs_left && c - s->last_activity >= s->stall_limit) return 3;
    }
    return 0;
}

uint64_t preba_cycles(void* h) { return ((Sim*)h)->cycle; }
uint64_t preba_in_pos(void* h, int k) { return ((Sim*)h)->in[k].pos; }
uint64_t preba_in_done_cycle(void* h, int k) { return ((Sim*)h)->in[k].done_cycle; }
uint64_t preba_out_count(void* h, int k) { return ((Sim*)h)->out[k].cycles.size(); }

void preba_out_copy(void* h, int k, uint32_t* words, uint64_t* cycles) {
    OutPort& o = ((Sim*)h)->out[k];
    if (!o.words.empty()) std::memcpy(words, o.words.data(), o.words.size() * sizeof(uint32_t));
    if (!o.cycles.empty()) std::memcpy(cycles, o.cycles.data(), o.cycles.size() * sizeof(uint64_t));
}

// Write this model's coverage counts (coverage builds only). Returns 0 on success.
int preba_coverage_write(void* h, const char* path) {
#if VM_COVERAGE
    ((Sim*)h)->ctx->coveragep()->write(path);
    return 0;
#else
    (void)h; (void)path;
    return -1;
#endif
}

void preba_free(void* h) {
    Sim* s = (Sim*)h;
    s->top->final();
#ifdef PREBA_TRACE
    if (s->tfp) {
        s->tfp->close();
        delete s->tfp;
    }
#endif
    delete s->top;
    delete s->ctx;
    delete s;
}

}  // extern "C"
