// The simulated board: a Verilator model of hdl.board.ulx3s.LinkedCore whose UART pins are
// connected to a pseudo-terminal, so host code talks to it exactly as to a real board's
// /dev/ttyUSB0.
//
//   Vboard [--divisor N] [--full-speed-cycles N] [--throttle N] [--vcd FILE]
//
// Prints "PTY <path>" on stdout once the terminal is ready, then runs until killed (or until
// its parent exits). The UART runs at one bit per N clocks on both pins (N = the divisor the
// model was generated with). Timing model: while bits move on either pin, and for
// --full-speed-cycles after, the model runs as fast as it can; after that, if the link is
// inside a request (busy pin), it runs --throttle cycles per millisecond of wall time (so the
// link's timeout measures host silence in wall time), and if the link is idle it sleeps until
// the host writes.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <termios.h>
#include <unistd.h>

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "Vboard.h"
#include "verilated.h"
#if VM_TRACE
#include "verilated_vcd_c.h"
#endif

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int) { g_stop = 1; }

struct UartDriver {            // host -> board: drives uart_rx
    int divisor;
    int bit = -1;              // -1 idle, 0 start, 1..8 data, 9 stop
    int timer = 0;
    uint8_t cur = 0;
    int level() const {
        if (bit < 0) return 1;
        if (bit == 0) return 0;
        if (bit <= 8) return (cur >> (bit - 1)) & 1;
        return 1;
    }
    // Advance one clock; pull the next byte from q when idle. Returns true while active.
    bool tick(std::deque<uint8_t>& q) {
        if (bit < 0) {
            if (q.empty()) return false;
            cur = q.front();
            q.pop_front();
            bit = 0;
            timer = divisor;
        }
        if (--timer == 0) {
            timer = divisor;
            if (++bit == 10) bit = -1;
        }
        return true;
    }
};

struct UartMonitor {           // board -> host: samples uart_tx
    int divisor;
    int state = -1;            // -1 idle, 0 start, 1..8 data, 9 stop
    int timer = 0;
    uint8_t cur = 0;
    long framing_errors = 0;
    bool tick(int line, std::vector<uint8_t>& out) {
        if (state < 0) {
            if (line) return false;
            state = 0;
            timer = divisor / 2;             // middle of the start bit
            return true;
        }
        if (--timer > 0) return true;
        timer = divisor;
        if (state == 0) {
            if (line) { state = -1; return false; }   // glitch
            state = 1;
            cur = 0;
        } else if (state <= 8) {
            cur |= (line & 1) << (state - 1);
            state++;
        } else {
            if (line) out.push_back(cur); else framing_errors++;
            state = -1;
        }
        return true;
    }
};

int main(int argc, char** argv) {
    long divisor = 0, full_speed = 20000, throttle = 32;
    const char* vcd = nullptr;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) { fprintf(stderr, "%s needs a value\n", a.c_str()); exit(2); }
            return argv[++i];
        };
        if (a == "--divisor") divisor = atol(next());
        else if (a == "--full-speed-cycles") full_speed = atol(next());
        else if (a == "--throttle") throttle = atol(next());
        else if (a == "--vcd") vcd = next();
        else { fprintf(stderr, "unknown argument %s\n", a.c_str()); return 2; }
    }
    if (divisor < 4) { fprintf(stderr, "--divisor N (>= 4) is required\n"); return 2; }
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) { perror("posix_openpt"); return 1; }
    const char* slave_name = ptsname(master);
    // Hold the slave open ourselves: in raw mode (no echo, no line editing) from the start, and
    // so that the host closing and reopening it never makes the master side fail.
    int slave = open(slave_name, O_RDWR | O_NOCTTY);
    if (slave < 0) { perror("open pty slave"); return 1; }
    struct termios t;
    tcgetattr(slave, &t);
    cfmakeraw(&t);
    tcsetattr(slave, TCSANOW, &t);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);

    Verilated::commandArgs(argc, argv);
    auto* top = new Vboard;
#if VM_TRACE
    VerilatedVcdC* tfp = nullptr;
    if (vcd) { Verilated::traceEverOn(true); tfp = new VerilatedVcdC; top->trace(tfp, 99); tfp->open(vcd); }
#else
    if (vcd) { fprintf(stderr, "--vcd needs a model built with tracing\n"); return 2; }
#endif
    uint64_t cycle = 0;
    auto step = [&]() {
        top->clk = 0; top->eval();
#if VM_TRACE
        if (tfp) tfp->dump(2 * cycle);
#endif
        top->clk = 1; top->eval();
#if VM_TRACE
        if (tfp) tfp->dump(2 * cycle + 1);
#endif
        cycle++;
    };
    top->uart_rx = 1;
    top->rst = 1;
    for (int i = 0; i < 8; i++) step();
    top->rst = 0;

    printf("PTY %s\n", slave_name);
    fflush(stdout);

    UartDriver drv{(int)divisor};
    UartMonitor mon{(int)divisor};
    std::deque<uint8_t> inq;
    std::vector<uint8_t> outq;
    size_t out_sent = 0;
    uint64_t quiet = 0, bytes_in = 0, bytes_out = 0;
    uint8_t buf[65536];

    while (!g_stop) {
        // Exchange bytes with the host.
        for (;;) {
            ssize_t n = read(master, buf, sizeof buf);
            if (n > 0) { inq.insert(inq.end(), buf, buf + n); bytes_in += n; continue; }
            break;
        }
        while (out_sent < outq.size()) {
            ssize_t n = write(master, outq.data() + out_sent, outq.size() - out_sent);
            if (n <= 0) break;
            out_sent += n;
            bytes_out += n;
        }
        if (out_sent == outq.size()) { outq.clear(); out_sent = 0; }

        long budget;
        if (!inq.empty() || drv.bit >= 0 || mon.state >= 0 || quiet < (uint64_t)full_speed) {
            budget = 4096;
        } else {
            // Nothing on the wires: sleep until the host writes (or 1 ms if the link is
            // inside a request, then let its timeout advance by --throttle cycles).
            struct pollfd p = {master, POLLIN, 0};
            int r = poll(&p, 1, top->busy ? 1 : 100);
            if (r > 0 && (p.revents & POLLIN)) continue;
            budget = top->busy ? throttle : 0;
        }
        for (long i = 0; i < budget; i++) {
            bool active = drv.tick(inq);
            top->uart_rx = drv.level();
            step();
            active |= mon.tick(top->uart_tx, outq);
            quiet = active ? 0 : quiet + 1;
        }
    }
    fprintf(stderr, "sim board: %llu cycles, %llu bytes in, %llu bytes out, %ld framing errors\n",
            (unsigned long long)cycle, (unsigned long long)bytes_in,
            (unsigned long long)bytes_out, mon.framing_errors);
#if VM_TRACE
    if (tfp) tfp->close();
#endif
    top->final();
    delete top;
    close(slave);
    close(master);
    return 0;
}
