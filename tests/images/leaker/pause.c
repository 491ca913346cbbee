/*
 * pause: holds a PID namespace open, like Kubernetes' pause container, for sentinel's
 * sidecar tests (the app and sentinel both join it with `--pid container:PAUSE`).
 * Sleeps until SIGTERM or SIGINT, then exits 0; reaps orphans it inherits as init.
 * A static binary for an image FROM scratch.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) { stop_signal = sig; }

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    while (!stop_signal) {
        pause();
    }
    return 0;
}
