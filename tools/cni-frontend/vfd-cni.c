/* vfd-cni: the CNI plugin binary a container runtime runs. It does no CNI work itself: it sends its
 * CNI environment and stdin to the vfd daemon's CNI socket, where the command runs
 * (vfd/daemon/cni.py, vfd/integrations/cni/main.py), then writes the daemon's stdout and stderr and
 * exits with its code. Static and small, so a node needs no Python and a command costs one tiny
 * process start (docs/kubernetes.md; docs/performance.md says why).
 *
 * Framing (vfd/integrations/cni/wire.py is the reference; big-endian u32/i32):
 *   request  "VCQ1" len | count | count x (n, "NAME=value") | n, stdin
 *   reply    "VCR1" len | exit code | n, stdout | n, stderr
 * Socket: $VFD_CNI_SOCKET, else VFD_CNI_SOCKET_DEFAULT (vfd's default cni_socket). No daemon there:
 * a CNI error with code 11 (50 for STATUS) naming the socket and the errno, exit 1.
 * Build: gcc -static -Os -s -o vfd-cni vfd-cni.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define VFD_CNI_SOCKET_DEFAULT "/run/vfd/cni.sock"
#define MAX_STDIN (1u << 20)                       /* wire.MAX_STDIN */
#define MAX_REPLY ((1u << 20) + (64u << 10) + 12)  /* wire.MAX_REPLY */
#define REPLY_WAIT_MS (300 * 1000)                 /* vfd answers within its REQUEST_DEADLINE (120 s) */

static const char *const ENV_NAMES[] = {           /* wire.ENV_NAMES */
    "CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH",
    "VFD_CONF", "VFD_CNI_SYSFS", NULL};

static char version[24] = "1.0.0";

/* The netconf's cniVersion, for our own error results only: a plain scan, not a JSON parse. */
static void find_version(const char *in, size_t n) {
    const char *key = "\"cniVersion\"", *p = memmem(in, n, key, strlen(key)), *end = in + n;
    if (!p) return;
    for (p += strlen(key); p < end && strchr(" \t\r\n:", *p); p++) {}
    if (p >= end || *p++ != '"') return;
    size_t i = 0;
    while (p + i < end && i < sizeof version - 1 && strchr("0123456789.", p[i])) i++;
    if (i && p + i < end && p[i] == '"') { memcpy(version, p, i); version[i] = 0; }
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static int fail(int code, const char *msg, const char *details) {
    printf("{\"cniVersion\": \"%s\", \"code\": %d, \"msg\": ", version, code);
    json_str(msg);
    if (details) { printf(", \"details\": "); json_str(details); }
    printf("}\n");
    fflush(stdout);
    return 1;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w; n -= (size_t)w;
    }
    return 0;
}

/* Read exactly n bytes, waiting at most until deadline (CLOCK_MONOTONIC ms); -1 with errno. */
static int read_all(int fd, char *p, size_t n, long long deadline) {
    while (n) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long long left = deadline - (ts.tv_sec * 1000LL + ts.tv_nsec / 1000000);
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = left > 0 ? poll(&pfd, 1, (int)left) : 0;
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) { errno = ETIMEDOUT; return -1; }
        ssize_t got = r < 0 ? -1 : read(fd, p, n);
        if (got < 0 && errno == EINTR) continue;
        if (got == 0) errno = ECONNRESET;
        if (got <= 0) return -1;
        p += got; n -= (size_t)got;
    }
    return 0;
}

static void put32(char *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static uint32_t get32(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const char *cmd = getenv("CNI_COMMAND");
    int down_code = cmd && strcmp(cmd, "STATUS") == 0 ? 50 : 11;  /* STATUS: "plugin not available" */
    static char in[MAX_STDIN + 1];
    size_t n_in = 0;
    for (ssize_t r; n_in <= MAX_STDIN; n_in += (size_t)r) {
        r = read(0, in + n_in, MAX_STDIN + 1 - n_in);
        if (r < 0 && errno == EINTR) { r = 0; continue; }
        if (r <= 0) break;
    }
    find_version(in, n_in);
    if (n_in > MAX_STDIN) return fail(4, "the network configuration on stdin is over 1 MiB", NULL);

    /* the request: header, variables, stdin */
    size_t cap = 16 + n_in;
    for (int i = 0; ENV_NAMES[i]; i++) { const char *v = getenv(ENV_NAMES[i]); if (v) cap += 5 + strlen(ENV_NAMES[i]) + strlen(v); }
    char *req = malloc(cap), *p = req + 12;
    if (!req) return fail(11, "vfd-cni: out of memory", NULL);
    uint32_t count = 0;
    for (int i = 0; ENV_NAMES[i]; i++) {
        const char *v = getenv(ENV_NAMES[i]);
        if (!v) continue;
        size_t k = strlen(ENV_NAMES[i]), l = strlen(v);
        put32(p, (uint32_t)(k + 1 + l));
        memcpy(p + 4, ENV_NAMES[i], k); p[4 + k] = '='; memcpy(p + 5 + k, v, l);
        p += 5 + k + l; count++;
    }
    put32(p, (uint32_t)n_in); memcpy(p + 4, in, n_in); p += 4 + n_in;
    memcpy(req, "VCQ1", 4); put32(req + 4, (uint32_t)(p - req - 8)); put32(req + 8, count);

    /* connect; a path longer than sun_path goes through its directory's descriptor */
    const char *path = getenv("VFD_CNI_SOCKET");
    if (!path || !*path) path = VFD_CNI_SOCKET_DEFAULT;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char msg[600], dir[4096];
    if (strlen(path) < sizeof sa.sun_path) {
        strcpy(sa.sun_path, path);
    } else {
        const char *slash = strrchr(path, '/');
        size_t dl = slash ? (size_t)(slash - path) : 0;
        if (!slash || dl >= sizeof dir) { errno = ENAMETOOLONG; goto down; }
        memcpy(dir, path, dl); dir[dl] = 0;
        int dfd = open(dl ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) goto down;
        if ((size_t)snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", dfd, slash + 1)
            >= sizeof sa.sun_path) { errno = ENAMETOOLONG; goto down; }
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) goto down;
    /* vfd may answer before reading it all (a refusal): its reply is read even when sending failed */
    int sent = write_all(fd, req, (size_t)(p - req)), send_errno = errno;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long deadline = ts.tv_sec * 1000LL + ts.tv_nsec / 1000000 + (sent < 0 ? 1000 : REPLY_WAIT_MS);
    char head[8];
    if (read_all(fd, head, 8, deadline) < 0) {
        if (sent < 0)
            snprintf(msg, sizeof msg, "vfd is not answering: sending to %s failed: %s", path, strerror(send_errno));
        else
            snprintf(msg, sizeof msg, "vfd is not answering: no reply on %s: %s", path, strerror(errno));
        return fail(11, msg, NULL);
    }
    uint32_t len = get32(head + 4);
    char *rep = len >= 12 && len <= MAX_REPLY && memcmp(head, "VCR1", 4) == 0 ? malloc(len) : NULL;
    if (!rep || read_all(fd, rep, len, deadline) < 0) {
        snprintf(msg, sizeof msg, "vfd sent no readable reply on %s (%u bytes announced): %s", path, len,
                 rep ? strerror(errno) : "bad header");
        return fail(11, msg, NULL);
    }
    int32_t rc = (int32_t)get32(rep);
    uint32_t n_out = get32(rep + 4), n_err = n_out <= len - 12 ? get32(rep + 8 + n_out) : 0;
    if (n_out > len - 12 || n_err != len - 12 - n_out)
        return fail(11, "vfd sent a reply whose lengths do not add up", NULL);
    write_all(2, rep + 12 + n_out, n_err);
    if (write_all(1, rep + 8, n_out) < 0) return 1;
    return rc < 0 || rc > 255 ? 1 : rc;

down:
    snprintf(msg, sizeof msg, "vfd is not answering: cannot connect to its CNI socket %s: %s", path, strerror(errno));
    return fail(down_code, msg, "is the vfd daemon running on this node? (VFD_CNI_SOCKET overrides the socket path)");
}
