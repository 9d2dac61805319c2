/* SSE load client for benchmarks/sse_fanout.py (--client-impl c): N connections to
 * GET /v1/events on 127.0.0.1, read with epoll, latency of every `data:` line computed from the
 * event's own "sent_at" at the moment its bytes were read.
 *
 * Why C: the clients share the server's two cores, and the Python client (uvloop protocol)
 * costs ~8 µs of CPU per delivery — as much as the server under test. A load generator should
 * measure the server, not compete with it (wrk and h2load are C for the same reason).
 *
 *   sse_client PORT CONNS EVENTS DEADLINE_S POLL_MS
 *
 * Prints "READY" once every connection has its ": connected" comment, then one JSON line
 * {"delivered", "overflows", "cpu_s", "latencies"} like the Python client, then waits for
 * stdin to close before it closes its connections (teardown is not delivery cost).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE 65536
#define MAX_SEQ 100000

typedef struct {
    int fd;
    int connected;
    int finished;
    int overflowed;
    int events;
    size_t len;        /* bytes of an unfinished line kept in buf */
    char *buf;
    unsigned char *seen; /* seen[seq]: this event already counted */
} conn_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double *lat;
static size_t nlat, caplat;
static int nevents, finished, nconns;

static void add_latency(double ms) {
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 1 << 16;
        lat = realloc(lat, caplat * sizeof *lat);
        if (!lat) { perror("realloc"); exit(1); }
    }
    lat[nlat++] = ms;
}

static void finish(conn_t *c) {
    if (!c->finished) { c->finished = 1; finished++; }
}

/* One complete line (without its newline). */
static void on_line(conn_t *c, const char *line, size_t n, double at) {
    if (!c->connected) {
        if (n >= 11 && memcmp(line, ": connected", 11) == 0) c->connected = 1;
        return;
    }
    if (n >= 15 && memcmp(line, "event: overflow", 15) == 0) { c->overflowed = 1; finish(c); return; }
    if (n < 6 || memcmp(line, "data: ", 6) != 0) return;
    const char *seq = memmem(line, n, "\"seq\":", 6);
    const char *sent = memmem(line, n, "\"sent_at\":", 10);
    if (!seq || !sent) return;
    long s = strtol(seq + 6, NULL, 10);
    double t = strtod(sent + 10, NULL);
    if (s < 0 || s >= MAX_SEQ || c->seen[s]) return;
    c->seen[s] = 1;
    add_latency((at - t) * 1000.0);
    if (++c->events >= nevents) finish(c);
}

static void on_data(conn_t *c, const char *data, size_t n, double at) {
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (data[i] != '\n') continue;
        if (c->len) { /* the line began in an earlier read */
            size_t part = i - start;
            if (c->len + part < MAX_LINE) { memcpy(c->buf + c->len, data + start, part); c->len += part; }
            on_line(c, c->buf, c->len, at);
            c->len = 0;
        } else {
            on_line(c, data + start, i - start, at);
        }
        start = i + 1;
    }
    if (start < n) {
        size_t part = n - start;
        if (c->len + part < MAX_LINE) { memcpy(c->buf + c->len, data + start, part); c->len += part; }
    }
}

int main(int argc, char **argv) {
    if (argc < 6) { fprintf(stderr, "usage: %s PORT CONNS EVENTS DEADLINE_S POLL_MS\n", argv[0]); return 2; }
    int port = atoi(argv[1]);
    nconns = atoi(argv[2]);
    nevents = atoi(argv[3]);
    double deadline_s = atof(argv[4]);
    double poll_ms = atof(argv[5]);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    conn_t *conns = calloc(nconns, sizeof *conns);
    int ep = epoll_create1(0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    static const char req[] = "GET /v1/events?topics=bench.%23 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Accept: text/event-stream\r\n\r\n";
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        c->buf = malloc(MAX_LINE);
        c->seen = calloc(MAX_SEQ, 1);
        for (int attempt = 0;; attempt++) {
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (c->fd >= 0 && connect(c->fd, (struct sockaddr *)&addr, sizeof addr) == 0) break;
            if (c->fd >= 0) close(c->fd);
            if (attempt >= 20) { perror("connect"); return 1; }
            usleep(100000 * (attempt + 1));
        }
        if (write(c->fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) { perror("write"); return 1; }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }

    static char data[1 << 16];
    struct epoll_event evs[1024];
    int connected = 0;
    double setup_end = now_s() + 120;
    while (connected < nconns && now_s() < setup_end) { /* every connection up before READY */
        int n = epoll_wait(ep, evs, 1024, 1000);
        for (int k = 0; k < n; k++) {
            conn_t *c = evs[k].data.ptr;
            ssize_t r = read(c->fd, data, sizeof data);
            if (r <= 0) { fprintf(stderr, "connection closed during set-up\n"); return 1; }
            int was = c->connected;
            on_data(c, data, (size_t)r, now_s());
            if (!was && c->connected) connected++;
        }
    }
    if (connected < nconns) { fprintf(stderr, "only %d of %d connected\n", connected, nconns); return 1; }
    printf("READY\n");
    fflush(stdout);

    double cpu_before = cpu_s();
    double end = now_s() + deadline_s;
    int timeout = poll_ms > 0 ? 0 : 100;
    struct timespec nap = {.tv_sec = 0, .tv_nsec = (long)(poll_ms * 1e6)};
    while (finished < nconns && now_s() < end) {
        /* With POLL_MS > 0, read in rounds: nap, then take whatever arrived (see sse_fanout.py). */
        if (poll_ms > 0) nanosleep(&nap, NULL);
        int n = epoll_wait(ep, evs, 1024, timeout);
        for (int k = 0; k < n; k++) {
            conn_t *c = evs[k].data.ptr;
            ssize_t r = read(c->fd, data, sizeof data);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                finish(c);
                continue;
            }
            on_data(c, data, (size_t)r, now_s());
        }
    }
    double cpu_used = cpu_s() - cpu_before;
    long delivered = 0;
    int overflows = 0;
    for (int i = 0; i < nconns; i++) { delivered += conns[i].events; overflows += conns[i].overflowed; }
    printf("{\"delivered\": %ld, \"overflows\": %d, \"cpu_s\": %.6f, \"latencies\": [", delivered, overflows, cpu_used);
    for (size_t i = 0; i < nlat; i++) printf(i ? ",%.3f" : "%.3f", lat[i]);
    printf("]}\n");
    fflush(stdout);
    while (getchar() != EOF) {
    }
    return 0;
}
