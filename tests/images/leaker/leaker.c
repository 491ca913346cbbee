/*
 * leaker: a memory leak on demand, for sentinel's Docker tests.
 *
 * Allocates and touches memory (so it is really resident and charged to the cgroup) at a
 * steady rate, optionally after a flat baseline, up to a cap or forever. Prints one
 * progress line per step on stdout. Exits 0 promptly on SIGTERM or SIGINT, so
 * `docker stop` is quick.
 *
 * Settings, from options or the environment (an option wins):
 *   --rate MiB      LEAKER_RATE_MIB      MiB added per second (default 1; 0 = none)
 *   --cap MiB       LEAKER_CAP_MIB       stop adding at this total leak (default 0 = no cap)
 *   --baseline MiB  LEAKER_BASELINE_MIB  allocated at once before leaking (default 0)
 *   --step-ms N     LEAKER_STEP_MS       milliseconds between steps (default 100)
 *   --hold          LEAKER_HOLD=1        after reaching the cap, sleep until signalled
 *                                        (the default); --exit: exit 0 at the cap
 *   --wait-usr1     LEAKER_WAIT_USR1=1   after the baseline, wait for SIGUSR1 before
 *                                        leaking (`docker kill -s USR1`): lets a test see
 *                                        the running container before it leaks
 *   --fork N        LEAKER_FORK          start N child processes first (default 0): they
 *                                        leak nothing and sleep until signalled (or their
 *                                        parent exits), so a test sees a container with
 *                                        more than one process
 *   --no-term-handler LEAKER_TERM_HANDLER=0  install no SIGTERM handler: as PID 1 of a
 *                                        container, SIGTERM from inside its PID namespace
 *                                        (a sidecar) is then dropped by the kernel
 *
 * SIGUSR2 (a "dump diagnostics" request) is counted and reported on stdout as
 * "leaker: SIGUSR2 count=N"; it never stops the leaker.
 * A static binary for an image FROM scratch: no libc at run time, no shell.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024UL * 1024UL)

static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t go_signal;
static volatile sig_atomic_t usr2_count;
static int usr2_reported;

static void on_signal(int sig) { stop_signal = sig; }
static void on_go(int sig) { go_signal = sig; }
static void on_usr2(int sig) {
    (void)sig;
    usr2_count++;
}

/* Report SIGUSR2s received since the last call (not from the handler: printf is unsafe). */
static void report_usr2(void) {
    int n = usr2_count;
    if (n != usr2_reported) {
        usr2_reported = n;
        printf("leaker: SIGUSR2 count=%d\n", n);
    }
}

static void usage(const char *prog) {
    fprintf(stderr,
            "usage: %s [--rate MiB] [--cap MiB] [--baseline MiB] [--step-ms N] [--hold|--exit]"
            " [--wait-usr1] [--fork N] [--no-term-handler]\n"
            "env: LEAKER_RATE_MIB LEAKER_CAP_MIB LEAKER_BASELINE_MIB LEAKER_STEP_MS LEAKER_HOLD"
            " LEAKER_WAIT_USR1 LEAKER_FORK LEAKER_TERM_HANDLER\n",
            prog);
}

static double parse_number(const char *name, const char *text) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || v < 0) {
        fprintf(stderr, "leaker: %s: not a number >= 0: '%s'\n", name, text);
        exit(2);
    }
    return v;
}

static double env_number(const char *name, double fallback) {
    const char *v = getenv(name);
    return (v != NULL && *v != '\0') ? parse_number(name, v) : fallback;
}

/* Allocate `bytes` and write to every page so they are resident. Returns 0 on failure. */
static int grab(size_t bytes, unsigned char fill) {
    if (bytes == 0) {
        return 1;
    }
    unsigned char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "leaker: mmap %zu bytes: %s\n", bytes, strerror(errno));
        return 0;
    }
    long page = sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < bytes; off += (size_t)page) {
        p[off] = fill;
        if (stop_signal) {
            return 1;
        }
    }
    return 1;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    /* Interrupted by a signal: return early, the caller checks stop_signal. */
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    double rate = env_number("LEAKER_RATE_MIB", 1);
    double cap = env_number("LEAKER_CAP_MIB", 0);
    double baseline = env_number("LEAKER_BASELINE_MIB", 0);
    double step_ms = env_number("LEAKER_STEP_MS", 100);
    const char *hold_env = getenv("LEAKER_HOLD");
    int hold = !(hold_env != NULL && strcmp(hold_env, "0") == 0);
    const char *wait_env = getenv("LEAKER_WAIT_USR1");
    int wait_usr1 = wait_env != NULL && strcmp(wait_env, "1") == 0;
    double forks = env_number("LEAKER_FORK", 0);
    const char *term_env = getenv("LEAKER_TERM_HANDLER");
    int term_handler = !(term_env != NULL && strcmp(term_env, "0") == 0);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--hold") == 0) {
            hold = 1;
        } else if (strcmp(a, "--exit") == 0) {
            hold = 0;
        } else if (strcmp(a, "--wait-usr1") == 0) {
            wait_usr1 = 1;
        } else if (strcmp(a, "--no-term-handler") == 0) {
            term_handler = 0;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(argv[0]);
            return 0;
        } else if (i + 1 < argc && strcmp(a, "--rate") == 0) {
            rate = parse_number(a, argv[++i]);
        } else if (i + 1 < argc && strcmp(a, "--cap") == 0) {
            cap = parse_number(a, argv[++i]);
        } else if (i + 1 < argc && strcmp(a, "--baseline") == 0) {
            baseline = parse_number(a, argv[++i]);
        } else if (i + 1 < argc && strcmp(a, "--step-ms") == 0) {
            step_ms = parse_number(a, argv[++i]);
        } else if (i + 1 < argc && strcmp(a, "--fork") == 0) {
            forks = parse_number(a, argv[++i]);
        } else {
            fprintf(stderr, "leaker: unknown or incomplete option '%s'\n", a);
            usage(argv[0]);
            return 2;
        }
    }
    if (step_ms < 1) {
        step_ms = 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (term_handler) {
        sigaction(SIGTERM, &sa, NULL);
    }
    sigaction(SIGINT, &sa, NULL);
    /* Installed even without --wait-usr1: a stray USR1 must not kill the leaker. */
    sa.sa_handler = on_go;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);

    /* Line-buffered so `docker logs` shows each line as it happens. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("leaker: start pid=%d rate_mib_s=%g cap_mib=%g baseline_mib=%g step_ms=%g hold=%d"
           " wait_usr1=%d term_handler=%d\n",
           (int)getpid(), rate, cap, baseline, step_ms, hold, wait_usr1, term_handler);

    pid_t parent = getpid();
    for (int n = 0; n < (int)forks; n++) {
        pid_t child = fork();
        if (child < 0) {
            fprintf(stderr, "leaker: fork: %s\n", strerror(errno));
            return 3;
        }
        if (child == 0) {
            /* Outside a container (where init's exit ends them) die with the parent. */
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent) {
                return 0;
            }
            printf("leaker: child %d pid=%d\n", n + 1, (int)getpid());
            while (!stop_signal) {
                sleep_ms(100);
            }
            return 0;
        }
    }

    if (!grab((size_t)(baseline * MIB), 0xb5)) {
        return 3;
    }
    printf("leaker: baseline done total_mib=%g\n", baseline);
    if (wait_usr1) {
        printf("leaker: waiting for SIGUSR1\n");
        while (!go_signal && !stop_signal) {
            report_usr2();
            sleep_ms(50);
        }
        if (!stop_signal) {
            printf("leaker: SIGUSR1, leaking\n");
        }
    }

    double per_step = rate * step_ms / 1000.0 * MIB; /* bytes per step */
    double leaked = 0, carry = 0;
    while (!stop_signal) {
        report_usr2();
        if (rate > 0 && (cap <= 0 || leaked < cap * MIB)) {
            carry += per_step;
            size_t chunk = (size_t)carry;
            if (cap > 0 && leaked + chunk > cap * MIB) {
                chunk = (size_t)(cap * MIB - leaked);
            }
            if (chunk >= (size_t)sysconf(_SC_PAGESIZE)) {
                if (!grab(chunk, 0x5a)) {
                    return 3;
                }
                leaked += chunk;
                carry -= chunk;
            }
            printf("leaker: leaked_mib=%.1f total_mib=%.1f\n", leaked / MIB,
                   leaked / MIB + baseline);
        } else if (!hold) {
            printf("leaker: cap reached, exiting\n");
            return 0;
        }
        sleep_ms((long)step_ms);
    }
    printf("leaker: signal %d, exiting\n", (int)stop_signal);
    return 0;
}
