/* xfrmd preload shim: makes AF_NETLINK sockets (XFRM, ROUTE, GENERIC) talk to an xfrmd
 * server over AF_UNIX SOCK_SEQPACKET, and answers the interface lookups libc and programs
 * make outside netlink (if_nametoindex & co, interface ioctls, a few /proc and /sys files)
 * from the same server. Protocol: docs/protocol.md (version 1).
 *
 * Every netlink socket is one connection; the fd the program gets IS that connection, so
 * poll/select/epoll/fcntl/fork/close behave natively. Written for xfrmd; no code copied. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/errqueue.h>
#include <linux/ethtool.h>
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <dirent.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>
#include <pthread.h>
#include <time.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <stddef.h>

#define F_HELLO 1
#define F_BIND 2
#define F_AUTOBIND 3
#define F_SETSOCKOPT 4
#define F_RECVD 5
#define F_BIND_AUTO 6
#define F_SYNC 7           /* u32 count: answered with SYNC_REPLY after what came before */
#define F_SYNC_REPLY 0x83
#define F_BATCH 8          /* several records in one: u32 length + record, repeated */
#define F_RELEASE 9        /* close() of the emulated socket; the connection is kept for reuse */
#define F_NETNS_FD 10      /* u32 fd + name: that fd of this process is emulated namespace NAME */
#define F_READ 11          /* u32: datagrams this socket has read so far (before a request) */
#define F_QUERY 16
#define F_BIND_REPLY 0x81
#define F_SOCK_ERROR 0x82
#define F_ANSWER 0x90
#define PROTO_VERSION 1
#define SERVICE_PROTOCOL 0xFFFFFFFFu
#define FILE_WRITE_PROTOCOL 0xFFFFFFFEu
#define MAXFD 65536
#define RECORD_MAX 131072
#define POOL_FD_MIN 512    /* the shim's own fds live at or above this */

struct frame { uint32_t zero; uint16_t version; uint16_t kind; };

struct nlsock {
    int protocol, type, bound;
    uint32_t portid, groups;
    int rcvbuf, sndbuf;
    int opts[16];            /* SOL_NETLINK boolean options by optname */
    int pending_err;
    int refs;                /* fds that refer to this socket (dup, dup2, F_DUPFD) */
    uint32_t sent, synced;   /* datagrams sent; how many of them the server surely answered */
    /* records not sent yet (docs/protocol.md, BATCH): HELLO, SETSOCKOPT and a group-less
     * BIND_AUTO change nothing a program could observe before its first datagram, so they
     * travel with it in one record. Each is a u32 length + the record. */
    char *out;
    size_t outlen, outcap;
    int outn;
    int announced;           /* the server has seen this socket's HELLO */
    /* Whether the connection may be reused after close() (see pool_put): every request
     * asked for exactly one final answer (NLMSG_ERROR or NLMSG_DONE) and all were read. */
    uint32_t expect, finals;
    int unsure, syncs;
    unsigned gen;            /* fork generation it was created in */
    uint64_t ino;            /* inode of our end of the connection */
    int keep_fd;             /* the shim's own copy of a kept connection (above POOL_FD_MIN)
                              * while the program uses it, else -1: see pool_get */
    int gone;                /* the server went away: every call fails, nothing polls ready */
    int nb;                  /* O_NONBLOCK as the program set it */
    int dumps;               /* dump requests sent whose NLMSG_DONE was not read yet */
    int hello_sent;          /* HELLO went ahead of the deferred records (a fresh connection) */
    int release_owed;        /* a kept connection whose previous socket's RELEASE heads the
                              * deferred records (see pool_put) */
    /* datagrams read, and the count the server was last told: it goes ahead of the next
     * request, so the server admits that request's answers against what is really unread
     * (docs/protocol.md, "Flow control") */
    uint32_t nread, nread_told;
    uint32_t recvd_max;      /* the largest buffer told in F_RECVD: the server's max_recvmsg_len */
};
static struct nlsock *nltab[MAXFD];
static struct nlsock *nlsock_new(void)
{
    struct nlsock *s = calloc(1, sizeof *s);
    if (s) s->keep_fd = -1;
    return s;
}
static void release(int fd);
static ssize_t scm_sendmsg(int fd, const struct msghdr *msg, int flags);
static ssize_t scm_recvmsg(int fd, struct msghdr *msg, int flags);
static unsigned fork_gen;                /* forks seen while netlink sockets were live */
/* placeholder fds of emulated namespaces (netns_open) */
#define NSFDS 16
static struct { int fd; char name[64]; } nsfds[NSFDS];
static int nsfd_n;
static pthread_mutex_t nsfd_lock = PTHREAD_MUTEX_INITIALIZER;

static void nsfd_forget(int fd)
{
    if (!nsfd_n) return;
    pthread_mutex_lock(&nsfd_lock);
    for (int i = 0; i < nsfd_n; i++)
        if (nsfds[i].fd == fd) { nsfds[i] = nsfds[--nsfd_n]; break; }
    pthread_mutex_unlock(&nsfd_lock);
}
static int max_nlfd = -1;                /* highest fd that ever held a netlink socket */

/* Optimistic autobind (docs/protocol.md, F_BIND_AUTO): once this process has had one
 * autobind answered, a later autobind of a socket while no other socket of the process holds
 * the process id as port id predicts that id (netlink_autobind's first choice) and does not
 * wait for the server. Not after the process forked with live netlink sockets: then a
 * closed fd does not mean a released port (the child holds it too). */
#define NPROTO 3
static pid_t auto_pid;                 /* the process the counters below belong to */
static int auto_ok[NPROTO];            /* an autobind of this protocol was answered */
static int pid_ports[NPROTO];          /* live sockets holding getpid() as port id */
static int auto_off;                   /* fork with live sockets seen */
static int nl_live;

/* getpid() without a system call each time: reset in a fork's child (pthread_atfork) */
static pid_t cached_pid;
static void child_pid_reset(void) { cached_pid = 0; }
static pid_t my_pid(void)
{
    if (!cached_pid) cached_pid = getpid();
    return cached_pid;
}

static int proto_slot(int protocol)
{
    return protocol == NETLINK_XFRM ? 0 : protocol == NETLINK_ROUTE ? 1 : 2;
}

static void auto_check_pid(void)
{
    pid_t p = my_pid();
    if (p != auto_pid) {
        auto_pid = p;
        memset(auto_ok, 0, sizeof auto_ok);
        memset(pid_ports, 0, sizeof pid_ports);
    }
}

/* ---- real functions ------------------------------------------------------------------ */
#define REAL(ret, name, args) static ret(*real_##name) args
REAL(int, socket, (int, int, int));
REAL(int, bind, (int, const struct sockaddr *, socklen_t));
REAL(int, connect, (int, const struct sockaddr *, socklen_t));
REAL(int, getsockname, (int, struct sockaddr *, socklen_t *));
REAL(int, getpeername, (int, struct sockaddr *, socklen_t *));
REAL(int, setsockopt, (int, int, int, const void *, socklen_t));
REAL(int, getsockopt, (int, int, int, void *, socklen_t *));
REAL(ssize_t, sendto, (int, const void *, size_t, int, const struct sockaddr *, socklen_t));
REAL(ssize_t, sendmsg, (int, const struct msghdr *, int));
REAL(ssize_t, send, (int, const void *, size_t, int));
REAL(ssize_t, recvfrom, (int, void *, size_t, int, struct sockaddr *, socklen_t *));
REAL(ssize_t, recvmsg, (int, struct msghdr *, int));
REAL(ssize_t, recv, (int, void *, size_t, int));
REAL(ssize_t, read, (int, void *, size_t));
REAL(ssize_t, write, (int, const void *, size_t));
REAL(int, close, (int));
REAL(int, ioctl, (int, unsigned long, ...));
REAL(int, open, (const char *, int, ...));
REAL(int, open64, (const char *, int, ...));
REAL(int, openat, (int, const char *, int, ...));
REAL(FILE *, fopen, (const char *, const char *));
REAL(FILE *, fopen64, (const char *, const char *));
REAL(int, fcntl, (int, int, ...));

#define LOAD(name) do { if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name); } while (0)

static void load_all(void)
{
    LOAD(socket); LOAD(bind); LOAD(connect); LOAD(getsockname); LOAD(getpeername);
    LOAD(setsockopt); LOAD(getsockopt); LOAD(sendto); LOAD(sendmsg); LOAD(send);
    LOAD(recvfrom); LOAD(recvmsg); LOAD(recv); LOAD(read); LOAD(write); LOAD(close);
    LOAD(ioctl); LOAD(open); LOAD(open64); LOAD(openat); LOAD(fopen); LOAD(fopen64);
    LOAD(fcntl);
}

__attribute__((constructor)) static void shim_init(void) { load_all(); }

static void nl_register(int fd, struct nlsock *s)
{
    nltab[fd] = s;
    if (fd > max_nlfd) max_nlfd = fd;
    nl_live++;
}

static struct nlsock *nl_of(int fd)
{
    return (fd >= 0 && fd < MAXFD) ? nltab[fd] : NULL;
}

/* ---- transport ------------------------------------------------------------------------ */
static const char *server_path(char *buf, size_t n)
{
    const char *p = getenv("XFRMD_SOCKET");
    if (p && *p) return p;
    p = getenv("XDG_RUNTIME_DIR");
    if (p && *p) { snprintf(buf, n, "%s/xfrmd.sock", p); return buf; }
    snprintf(buf, n, "/tmp/xfrmd-%u/xfrmd.sock", (unsigned)geteuid());
    return buf;
}

/* uid of a server we refused (docs/security.md): said once, then every connection fails */
static int refused_uid = -1;

static void complain(const char *what)
{
    char pb[256];
    int e = errno;
    if (refused_uid >= 0) return;        /* the refusal was the one line */
    fprintf(stderr, "xfrmd shim: %s: cannot reach the xfrmd server at %s: %s\n", what,
            server_path(pb, sizeof pb), strerror(e));
    errno = e;
}

/* The server went away under a netlink socket. A hung-up connection polls readable forever,
 * which turns an event loop into a busy loop (seen with pluto); Linux's netlink socket never
 * hangs up. The fd becomes an eventfd that never fires, and every later call on it fails
 * with ECONNREFUSED. */
static void server_gone(int fd, int *gone, const char *what)
{
    if (!*gone) {
        errno = ECONNREFUSED;
        complain(what);
        int ev = eventfd(0, EFD_CLOEXEC);
        if (ev >= 0) {
            int cloexec = real_fcntl(fd, F_GETFD) & FD_CLOEXEC;
            syscall(SYS_dup3, ev, fd, cloexec ? O_CLOEXEC : 0);   /* not our dup3 wrapper */
            real_close(ev);
        }
        *gone = 1;
    }
    errno = ECONNREFUSED;
}

/* A connected SEQPACKET socket to the server, HELLO sent; -1 with errno on failure.
 * ``extra`` (a file path, for FILE_WRITE connections) follows the namespace in HELLO. */
static int server_connect_x(uint32_t protocol, uint32_t type, int flags, const char *extra);

static int server_connect(uint32_t protocol, uint32_t type, int flags)
{
    return server_connect_x(protocol, type, flags, NULL);
}

/* HELLO into msg (at least 1300 bytes); returns its length. ``ino`` (netlink connections):
 * the inode of our end, by which the socket is found again after exec (nlsock_state). */
static size_t build_hello_ino(char *msg, uint32_t protocol, uint32_t type, const char *extra,
                              uint64_t ino);

static size_t build_hello(char *msg, uint32_t protocol, uint32_t type, const char *extra)
{
    return build_hello_ino(msg, protocol, type, extra, 0);
}

static size_t build_hello_ino(char *msg, uint32_t protocol, uint32_t type, const char *extra,
                              uint64_t ino)
{
    const char *ns = getenv("XFRMD_NETNS");
    if (!ns) ns = "";
    struct frame f = { 0, PROTO_VERSION, F_HELLO };
    size_t nlen = strnlen(ns, 250), xlen = extra ? strnlen(extra, 1000) : 0;
    memcpy(msg, &f, 8);
    memcpy(msg + 8, &protocol, 4);
    memcpy(msg + 12, &type, 4);
    memcpy(msg + 16, ns, nlen);
    msg[16 + nlen] = 0;
    size_t total = 17 + nlen;
    if (extra) { memcpy(msg + total, extra, xlen); msg[total + xlen] = 0; total += xlen + 1; }
    else if (ino) { memcpy(msg + total, &ino, 8); total += 8; }
    return total;
}

/* A connected SEQPACKET socket to the server (no HELLO yet); -1 with errno on failure. */
static int server_dial(int flags)
{
    char pb[256];
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    const char *path = server_path(pb, sizeof pb);
    int fd = real_socket(AF_UNIX, SOCK_SEQPACKET | flags, 0);
    if (fd < 0) return -1;
    strncpy(sa.sun_path, path, sizeof sa.sun_path - 1);
    if (real_connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        real_close(fd);
        errno = (e == ENOENT) ? ECONNREFUSED : e;
        return -1;
    }
    /* the server must be ours or root's: a socket another user put at the path would get
     * our requests, keys included (docs/security.md) */
    struct ucred cr;
    socklen_t crlen = sizeof cr;
    if (real_getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0 ||
        (cr.uid != 0 && cr.uid != geteuid())) {
        int uid = crlen == sizeof cr ? (int)cr.uid : -2;
        real_close(fd);
        if (refused_uid < 0) {
            refused_uid = uid < 0 ? 0 : uid;
            fprintf(stderr, "xfrmd: refusing server %s owned by uid %d\n", path, uid);
        }
        errno = ECONNREFUSED;
        return -1;
    }
    return fd;
}

static int server_connect_x(uint32_t protocol, uint32_t type, int flags, const char *extra)
{
    int fd = server_dial(flags);
    if (fd < 0) return -1;
    char msg[8 + 8 + 256 + 1024];
    size_t total = build_hello(msg, protocol, type, extra);
    if (real_send(fd, msg, total, MSG_NOSIGNAL) < 0) {
        int e = errno;
        real_close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* frame header + payload into buf; returns the record's length */
static size_t build_frame(char *buf, uint16_t kind, const void *payload, size_t n)
{
    struct frame f = { 0, PROTO_VERSION, kind };
    memcpy(buf, &f, 8);
    if (n) memcpy(buf + 8, payload, n);
    return 8 + n;
}

static int send_frame(int fd, uint16_t kind, const void *payload, size_t n)
{
    char buf[64];
    return real_send(fd, buf, build_frame(buf, kind, payload, n), MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/* ---- deferred records (BATCH) ---------------------------------------------------------- */
static int queue_record(struct nlsock *s, const void *rec, size_t n)
{
    if (s->outlen + 4 + n > s->outcap) {
        size_t cap = s->outcap ? s->outcap * 2 : 256;
        while (cap < s->outlen + 4 + n) cap *= 2;
        char *o = realloc(s->out, cap);
        if (!o) { errno = ENOMEM; return -1; }
        s->out = o; s->outcap = cap;
    }
    uint32_t len = (uint32_t)n;
    memcpy(s->out + s->outlen, &len, 4);
    memcpy(s->out + s->outlen + 4, rec, n);
    s->outlen += 4 + n;
    s->outn++;
    return 0;
}

static int send_frame_now(int fd, struct nlsock *s, uint16_t kind, const void *payload, size_t n);

/* a frame that may wait for the socket's first datagram; once the server has seen the
 * socket there is nothing to gain, and it goes at once */
static int defer_frame(int fd, struct nlsock *s, uint16_t kind, const void *payload, size_t n)
{
    char buf[64];
    if (s->announced) return send_frame_now(fd, s, kind, payload, n);
    return queue_record(s, buf, build_frame(buf, kind, payload, n));
}

/* Send what is deferred, plus ``rec`` (may be NULL) after it, as one record. */
static int flush_with(int fd, struct nlsock *s, const void *rec, size_t n, int flags)
{
    if (!s->outlen) {
        if (!rec) return 0;
        return real_send(fd, rec, n, flags | MSG_NOSIGNAL) < 0 ? -1 : 0;
    }
    if (rec && queue_record(s, rec, n) < 0) return -1;
    ssize_t w;
    if (s->outn == 1) {
        w = real_send(fd, s->out + 4, s->outlen - 4, flags | MSG_NOSIGNAL);
    } else {
        char *b = malloc(8 + s->outlen);
        if (!b) { errno = ENOMEM; return -1; }
        struct frame f = { 0, PROTO_VERSION, F_BATCH };
        memcpy(b, &f, 8);
        memcpy(b + 8, s->out, s->outlen);
        w = real_send(fd, b, 8 + s->outlen, flags | MSG_NOSIGNAL);
        free(b);
    }
    if (w < 0 && !s->announced && (errno == EPIPE || errno == ECONNRESET)) {
        /* refused again (--max-clients) or no server: say so once, as for a lost server */
        if (rec) { s->outlen -= 4 + n; s->outn--; }
        server_gone(fd, &s->gone, "connect");
        return -1;
    }
    if (w < 0) {
        if (rec) { s->outlen -= 4 + n; s->outn--; }   /* the caller reports the failure */
        return -1;
    }
    s->outlen = 0; s->outn = 0; s->announced = 1;
    return 0;
}

static int flush_out(int fd, struct nlsock *s)
{
    return flush_with(fd, s, NULL, 0, 0);
}

/* a frame that must reach the server now (it waits for an answer, or it changes what the
 * socket receives): whatever is deferred goes with it */
static int send_frame_now(int fd, struct nlsock *s, uint16_t kind, const void *payload, size_t n)
{
    char buf[64];
    return flush_with(fd, s, buf, build_frame(buf, kind, payload, n), 0);
}

/* Wait for BIND_REPLY (nothing else can be queued before the first binding). */
static int bind_exchange(int fd, struct nlsock *s, uint16_t kind, uint32_t portid, uint32_t groups)
{
    uint32_t p[2] = { portid, groups };
    if (send_frame_now(fd, s, kind, p, kind == F_BIND ? 8 : 0) < 0) return -1;
    for (;;) {
        char buf[64];
        ssize_t n = real_recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            fd_set r; FD_ZERO(&r); FD_SET(fd, &r);
            select(fd + 1, &r, NULL, NULL, NULL);
            continue;
        }
        if (n <= 0) { server_gone(fd, &s->gone, "bind"); return -1; }
        struct frame f; memcpy(&f, buf, sizeof f);
        if (n >= 8 && f.zero == 0 && f.kind == F_BIND_REPLY && n >= 20) {
            int32_t err; uint32_t pid, grp;
            memcpy(&err, buf + 8, 4); memcpy(&pid, buf + 12, 4); memcpy(&grp, buf + 16, 4);
            if (err == -ENOENT) {
                /* a HELLO cannot make a namespace (docs/security.md): say which is missing */
                static int said;
                const char *ns = getenv("XFRMD_NETNS");
                if (!said++)
                    fprintf(stderr, "xfrmd: the server has no network namespace \"%s\" "
                            "(create it with `xfrmd ctl netns add %s`)\n", ns ? ns : "default",
                            ns ? ns : "default");
            }
            if (err) { errno = -err; return -1; }
            s->bound = 1; s->portid = pid; s->groups = grp;
            auto_check_pid();
            if (portid == 0) auto_ok[proto_slot(s->protocol)] = 1;
            if (pid == (uint32_t)auto_pid) {
                pid_ports[proto_slot(s->protocol)]++;
                /* the protocols whose table does not hold this process's id either (the
                 * reply's fourth word): their first autobind is predicted too (`ip`'s
                 * NETLINK_XFRM socket after its NETLINK_ROUTE one: one round trip less) */
                uint32_t freem = 0;
                if (portid == 0 && n >= 24) memcpy(&freem, buf + 20, 4);
                if (freem >> NETLINK_XFRM & 1) auto_ok[proto_slot(NETLINK_XFRM)] = 1;
                if (freem >> NETLINK_ROUTE & 1) auto_ok[proto_slot(NETLINK_ROUTE)] = 1;
            }
            return 0;
        }
    }
}

static int ensure_bound(int fd, struct nlsock *s)
{
    if (s->bound) return 0;
    return bind_exchange(fd, s, F_AUTOBIND, 0, 0);
}

/* ---- the service connection (one per process; reopened after fork) -------------------- */
static int svc_fd = -1;
static pid_t svc_pid;

static pthread_mutex_t svc_lock = PTHREAD_MUTEX_INITIALIZER;

static int service_query_locked(const char *json, char *out, size_t outlen);
static int svc_connect_locked(void);
static long json_int(const char *js, const char *key, long dflt);

/* One question at a time on the process's service connection: threads of one program
 * (charon's senders, ping's) ask concurrently, e.g. inet_send_check for every datagram. */
static int service_query(const char *json, char *out, size_t outlen)
{
    pthread_mutex_lock(&svc_lock);
    int r = service_query_locked(json, out, outlen);
    int e = errno;
    pthread_mutex_unlock(&svc_lock);
    errno = e;
    return r;
}

/* a fork while another thread asks must not leave the child's lock held */
static void svc_lock_take(void) { pthread_mutex_lock(&svc_lock); }
static void svc_lock_give(void) { pthread_mutex_unlock(&svc_lock); }
__attribute__((constructor)) static void svc_lock_atfork(void)
{
    pthread_atfork(svc_lock_take, svc_lock_give, svc_lock_give);
}

/* ---- answers kept while the link generation stands (docs/protocol.md "The link
 * generation page") ----
 * if_nametoindex and SIOCETHTOOL ETHTOOL_GFEATURES are asked for the same devices over and
 * over (charon: for every SA it installs). Their answers are kept per (namespace of the
 * service connection, query text), each with the generation the page showed before it was
 * asked; one is used again only while the page still shows that generation. The server
 * moves it on every device registered, unregistered, renamed or moved and every feature
 * mask that changes, before it answers anything else; an answer with "keep":0 (a bond's
 * GFEATURES, computed when asked) is not kept. No page (another user's file, an
 * older server): nothing is kept. Everything is dropped when the service connection is
 * made again (fork, setns/unshare, a new server). Under svc_lock. */
#define LINKGEN_MAGIC 0x6E676C78u       /* "xlgn" */
#define LCACHE_N 32
#define LCACHE_Q 384
#define LCACHE_A 384
static const volatile uint64_t *linkgen;    /* the page's generation; NULL: none mapped */
static unsigned svc_epoch;                  /* service connections made by this process */
static char svc_ns[256];                    /* the namespace that connection answers for */
static struct lcache { int used; uint64_t gen; char ns[256]; char q[LCACHE_Q]; char a[LCACHE_A]; }
    lcache[LCACHE_N];
static int lcache_next;

/* map <socket>.linkgen when it is the server's (peer uid ``owner``), not writable by
 * others, and has the magic */
static void linkgen_map(uid_t owner)
{
    char pb[256], path[300];
    if (linkgen) munmap((void *)((const char *)linkgen - 8), 4096);
    linkgen = NULL;
    memset(lcache, 0, sizeof lcache);
    snprintf(path, sizeof path, "%s.linkgen", server_path(pb, sizeof pb));
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return;
    struct stat st;
    void *m = MAP_FAILED;
    if (syscall(SYS_fstat, fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == owner &&
        !(st.st_mode & 022) && st.st_size >= 4096)
        m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    real_close(fd);
    if (m == MAP_FAILED) return;
    if (*(const volatile uint32_t *)m != LINKGEN_MAGIC) { munmap(m, 4096); return; }
    linkgen = (const volatile uint64_t *)((char *)m + 8);
}

static uint64_t linkgen_now(void)
{
    return linkgen ? __atomic_load_n(linkgen, __ATOMIC_ACQUIRE) : 0;
}

/* A service query whose answer depends only on the links of the namespace: the kept
 * answer while the generation stands, else asked (and kept if it succeeded). */
static int service_query_link(const char *json, char *out, size_t outlen)
{
    pthread_mutex_lock(&svc_lock);
    int r = -1, found = 0;
    size_t qn = strlen(json);
    if (linkgen && svc_fd >= 0 && svc_pid == my_pid() && qn < LCACHE_Q) {
        uint64_t g = linkgen_now();
        for (int i = 0; i < LCACHE_N && !found; i++) {
            struct lcache *c = &lcache[i];
            if (c->used && c->gen == g && !strcmp(c->ns, svc_ns) && !strcmp(c->q, json) &&
                strlen(c->a) < outlen) {
                memcpy(out, c->a, strlen(c->a) + 1);
                found = 1; r = 0;
            }
        }
    }
    if (!found && svc_connect_locked() < 0) {
        int e = errno;
        pthread_mutex_unlock(&svc_lock);
        errno = e;
        return -1;
    }
    if (!found) {
        unsigned epoch = svc_epoch;
        uint64_t g = linkgen_now();
        r = service_query_locked(json, out, outlen);
        /* a connection made during the query mapped another page: g is not its generation */
        if (r == 0 && linkgen && epoch == svc_epoch && qn < LCACHE_Q &&
            strlen(out) < LCACHE_A && json_int(out, "errno", 0) == 0 &&
            json_int(out, "keep", 1) != 0) {
            struct lcache *c = &lcache[lcache_next];
            lcache_next = (lcache_next + 1) % LCACHE_N;
            c->used = 1; c->gen = g;
            memcpy(c->ns, svc_ns, sizeof c->ns);
            memcpy(c->q, json, qn + 1);
            memcpy(c->a, out, strlen(out) + 1);
        }
    }
    int e = errno;
    pthread_mutex_unlock(&svc_lock);
    errno = e;
    return r;
}

/* the process's service connection, made (and the page mapped) if it has none */
static int svc_connect_locked(void)
{
    if (svc_fd < 0 || svc_pid != my_pid()) {
        if (svc_fd >= 0 && svc_pid != my_pid()) svc_fd = -1;  /* the parent's: leave it */
        svc_fd = server_connect(SERVICE_PROTOCOL, 0, SOCK_CLOEXEC);
        svc_pid = my_pid();
        svc_epoch++;
        if (svc_fd < 0) { linkgen_map((uid_t)-1); complain("interface lookup"); return -1; }
        /* out of the program's way: its next open() gets the number Linux would give */
        int high = real_fcntl(svc_fd, F_DUPFD_CLOEXEC, POOL_FD_MIN);
        if (high >= 0) { real_close(svc_fd); svc_fd = high; }
        const char *ns = getenv("XFRMD_NETNS");
        snprintf(svc_ns, sizeof svc_ns, "%.250s", ns ? ns : "");
        struct ucred cr;
        socklen_t crlen = sizeof cr;
        if (real_getsockopt(svc_fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) == 0)
            linkgen_map(cr.uid);
        else
            linkgen_map((uid_t)-1);
    }
    return 0;
}

static int service_query_locked(const char *json, char *out, size_t outlen)
{
    if (svc_connect_locked() < 0) return -1;
    size_t n = strlen(json);
    char *buf = malloc(8 + n);
    if (!buf) { errno = ENOMEM; return -1; }
    struct frame f = { 0, PROTO_VERSION, F_QUERY };
    memcpy(buf, &f, 8); memcpy(buf + 8, json, n);
    ssize_t w = real_send(svc_fd, buf, 8 + n, MSG_NOSIGNAL);
    free(buf);
    if (w < 0) { real_close(svc_fd); svc_fd = -1; errno = ECONNREFUSED; complain("query"); return -1; }
    char *rb = malloc(RECORD_MAX);
    if (!rb) { errno = ENOMEM; return -1; }
    ssize_t r;
    do r = real_recv(svc_fd, rb, RECORD_MAX, 0); while (r < 0 && errno == EINTR);
    if (r < 8) { free(rb); real_close(svc_fd); svc_fd = -1; errno = ECONNREFUSED; complain("query"); return -1; }
    size_t m = (size_t)r - 8;
    if (m >= outlen) m = outlen - 1;
    memcpy(out, rb + 8, m); out[m] = 0;
    free(rb);
    return 0;
}

/* Minimal JSON field extraction for the server's flat answers. */
static const char *json_find(const char *js, const char *key)
{
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(js, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    return p;
}

static long json_int(const char *js, const char *key, long dflt)
{
    const char *p = json_find(js, key);
    return p ? strtol(p, NULL, 10) : dflt;
}

/* What this process may do, asked once per process (service op "capable"): the server
 * decides from our credentials as the kernel would (docs/security.md). The kernel answers
 * these checks at once, where the shim does not wait for the server: joining a group of a
 * protocol without NL_CFG_F_NONROOT_RECV, and SO_RCVBUFFORCE. If the server cannot be
 * asked, the call goes through and the server refuses it on its side. */
static pid_t cap_pid;
static int cap_admin = 1, cap_admin_init = 1;
static long cap_nonroot = -1;

static void caps_load(void)
{
    char out[512];
    if (cap_pid == my_pid()) return;
    if (service_query("{\"op\":\"capable\"}", out, sizeof out) < 0) return;
    cap_pid = my_pid();
    if (json_int(out, "errno", 1)) {        /* e.g. no such namespace: the server decides */
        cap_admin = cap_admin_init = 1; cap_nonroot = -1;
        return;
    }
    cap_admin = (int)json_int(out, "net_admin", 1);
    cap_admin_init = (int)json_int(out, "net_admin_init", 1);
    cap_nonroot = json_int(out, "nonroot_recv", -1);
}

/* netlink_allowed(sock, NL_CFG_F_NONROOT_RECV) */
static int may_join(int protocol)
{
    caps_load();
    return cap_admin || ((unsigned long)cap_nonroot >> protocol & 1);
}

/* Decodes a JSON string at p (pointing at the opening quote) into out; returns the end. */
static const char *json_str_at(const char *p, char *out, size_t n)
{
    size_t o = 0;
    if (*p != '"') { if (n) out[0] = 0; return p; }
    for (p++; *p && *p != '"'; p++) {
        char c = *p;
        if (c == '\\') {
            p++;
            switch (*p) {
            case 'n': c = '\n'; break; case 't': c = '\t'; break; case 'r': c = '\r'; break;
            case 'b': c = '\b'; break; case 'f': c = '\f'; break;
            case 'u': { unsigned v = 0; sscanf(p + 1, "%4x", &v); p += 4; c = (char)v; break; }
            default: c = *p;
            }
        }
        if (o + 1 < n) out[o++] = c;
    }
    if (n) out[o] = 0;
    return *p ? p + 1 : p;
}

static int json_str(const char *js, const char *key, char *out, size_t n)
{
    const char *p = json_find(js, key);
    if (!p || *p != '"') return -1;
    json_str_at(p, out, n);
    return 0;
}

static size_t hex_decode(const char *hex, unsigned char *out, size_t n)
{
    size_t i = 0;
    while (hex[0] && hex[1] && i < n) {
        unsigned v; sscanf(hex, "%2x", &v); out[i++] = (unsigned char)v; hex += 2;
    }
    return i;
}

/* ---- connection reuse ------------------------------------------------------------------
 * `ip -batch` opens and closes a netlink socket per line. Rather than a new connection each
 * time (connect, and on the server accept, credentials, epoll registration, close), close()
 * sends RELEASE (the server closes the emulated socket, as netlink_release) and keeps the
 * connection; the next socket() of this process takes it and its HELLO goes with the first
 * datagram. The RELEASE itself waits too: it goes at the head of the next socket's first
 * records on that connection (one server wake-up per `ip` command instead of two), or is
 * sent when another kept connection is taken; a connection closed or dropped from the pool
 * ends the emulated socket all the same. Until then only the port id stays taken, which
 * only this process's next autobind would ask for.
 * Only a connection with nothing left to read is kept: the socket joined no group,
 * each request asked for one final answer and all were read, no SYNC is outstanding, the
 * queue is empty, and the process has not forked since the socket was made. The kept fd sits
 * above POOL_FD_MIN with FD_CLOEXEC, so fd numbers the program sees are those Linux gives.
 * It stays open while the program uses the connection again (``keep_fd``): socket() makes
 * the program's fd a copy of it and close() puts it back, one system call each, not three
 * (a dup and a close more per `ip -batch` line); a close that does not keep the connection
 * closes that copy too (release), so the server sees the connection end as before. */
#define POOL_MAX 4
struct pooled { int fd; ino_t ino; int nb; int owed; };
static struct pooled pool[POOL_MAX];
static int pool_n;
static pid_t pool_pid;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

static int poolable(int fd, struct nlsock *s)
{
    if (s->gone || s->refs != 1 || s->groups || s->unsure || s->syncs || s->gen != fork_gen) return 0;
    if (s->announced && (s->expect == 0 || s->finals != s->expect)) return 0;
    char c;
    ssize_t r = real_recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* The RELEASEs the other kept connections owe, sent now: the new socket's autobind may
 * predict this process's id, which one of them may still hold on the server. */
static void pool_settle(void)
{
    for (int i = 0; i < pool_n; i++)
        if (pool[i].owed && send_frame(pool[i].fd, F_RELEASE, NULL, 0) == 0) pool[i].owed = 0;
}

/* close() of the last fd of ``s``: 1 if the connection went to the pool */
static int pool_put(int fd, struct nlsock *s)
{
    int e = errno, kept = 0;
    pthread_mutex_lock(&pool_lock);
    if (pool_pid != my_pid()) { pool_n = 0; pool_pid = my_pid(); }
    if (pool_n < POOL_MAX && poolable(fd, s)) {
        /* the server knows this socket: its RELEASE is owed; else the previous one's may
         * still be (its records were never sent) */
        int owed = (s->announced || s->hello_sent) ? 1 : s->release_owed;
        int pfd = s->keep_fd >= 0 ? s->keep_fd
                  : s->ino ? real_fcntl(fd, F_DUPFD_CLOEXEC, POOL_FD_MIN) : -1;
        if (pfd >= 0) {
            pool[pool_n++] = (struct pooled){ pfd, (ino_t)s->ino, s->nb, owed };
            s->keep_fd = -1;             /* the pool's now */
            kept = 1;
        }
    }
    pthread_mutex_unlock(&pool_lock);
    errno = e;
    return kept;
}

/* a kept connection as the new socket's fd (lowest free number, as socket() gives), or -1;
 * ``*owed``: its previous socket's RELEASE must head the new socket's first records;
 * ``*keep``: the pool's fd of it, which stays open with the socket (nlsock.keep_fd) */
static int pool_get(int type, uint64_t *ino, int *owed, int *keep)
{
    int fd = -1;
    pthread_mutex_lock(&pool_lock);
    if (pool_pid != my_pid()) {
        /* the parent's connections: not ours to use (the copies are closed on exec) */
        for (int i = 0; i < pool_n; i++) real_close(pool[i].fd);
        pool_n = 0; pool_pid = my_pid();
    }
    while (fd < 0 && pool_n > 0) {
        struct pooled p = pool[--pool_n];
        struct stat st;
        /* the program may have closed it behind our back (closefrom, close_range) */
        if (fstat(p.fd, &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_ino != p.ino) continue;
        fd = real_fcntl(p.fd, (type & SOCK_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, 0);
        *ino = (uint64_t)p.ino;
        *owed = p.owed;
        int nb = (type & SOCK_NONBLOCK) != 0;
        if (fd >= 0 && nb != p.nb && real_fcntl(fd, F_SETFL, nb ? O_NONBLOCK : 0) < 0) {
            real_close(fd); fd = -1;
        }
        if (fd >= 0) *keep = p.fd;
        else real_close(p.fd);
    }
    if (fd >= 0) pool_settle();
    pthread_mutex_unlock(&pool_lock);
    return fd;
}

/* ---- UDP sockets carried by the emulated stack (docs/protocol.md, "INET connection") ------
 * An AF_INET/AF_INET6 SOCK_DGRAM (UDP) socket becomes an INET connection to the server when
 * the emulated kernel is what it talks to:
 *   - the process entered an emulated namespace through the shim (unshare, setns on a
 *     placeholder, `ip netns exec`): XFRMD_INET=1, inherited across exec; its first bind,
 *     connect, sendto/sendmsg or SO_BINDTODEVICE converts it;
 *   - otherwise a bind() the host refuses with EADDRNOTAVAIL to an address the emulated
 *     namespace has, or an SO_BINDTODEVICE the host refuses with ENODEV naming an emulated
 *     device. Real programs' real sockets (IKE daemons on UDP 500/4500) stay real.
 * XFRMD_INET=0 turns all of it off. The connection replaces the program's fd (dup3), so
 * poll/epoll/SO_RCVTIMEO/O_NONBLOCK work natively; every record the server sends is a DGRAM
 * (source address + payload) or SOCK_ERROR. TCP is not emulated: in an emulated namespace
 * bind/connect of a stream socket fail with EOPNOTSUPP and one line on stderr. */
#define INET_PROTOCOL 0xFFFFFFFDu
#define F_INET_BIND 32
#define F_INET_CONNECT 33
#define F_INET_SEND 34
#define F_INET_SETSOCKOPT 35
#define F_INET_BIND_REPLY 0xA0
#define F_INET_DGRAM 0xA1
#define UDP_MAX_PAYLOAD 65507

struct inetsock {
    int family, proto, type, refs, bound, connected, gone;   /* type: SOCK_DGRAM or SOCK_RAW */
    int recv_hoplimit;                   /* IPV6_RECVHOPLIMIT */
    int recv_ttl;                        /* IP_RECVTTL */
    char dev[IF_NAMESIZE + 1];           /* SO_BINDTODEVICE */
    int pmtudisc;                        /* IP_MTU_DISCOVER / IPV6_MTU_DISCOVER */
    int recverr;                         /* IP_RECVERR / IPV6_RECVERR */
    /* the error queue: one local error (ip_local_error / ipv6_local_error) at most */
    int lerr, lerr_info;
    struct sockaddr_storage lerr_dst;
    size_t lerr_len;
    unsigned char lerr_data[64];
    uint32_t reuse;                      /* bit 0 SO_REUSEADDR, bit 1 SO_REUSEPORT */
    struct sockaddr_storage local, peer;
    socklen_t locallen, peerlen;
};
static struct inetsock *intab[MAXFD];

static struct inetsock *in_of(int fd)
{
    return (fd >= 0 && fd < MAXFD) ? intab[fd] : NULL;
}

static void in_release(int fd)
{
    struct inetsock *is = in_of(fd);
    if (!is) return;
    intab[fd] = NULL;
    if (--is->refs <= 0) free(is);
}

/* XFRMD_INET: "1" every UDP socket is the emulated kernel's, "0" none is */
static int inet_mode(void)
{
    const char *e = getenv("XFRMD_INET");
    return e && *e == '1';
}

static int inet_off(void)
{
    const char *e = getenv("XFRMD_INET");
    return e && *e == '0';
}

static socklen_t sa_len(int family)
{
    return family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static int icmp_proto(int family)
{
    return family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6;
}

/* the protocol of a real datagram socket the emulated stack can carry: IPPROTO_UDP (for 0
 * too) or the family's ICMP (a ping socket); 0 for anything else */
static int real_dgram_proto(int fd, int family)
{
    int proto = 0;
    socklen_t l = sizeof proto;
    if (real_getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &l) < 0) return 0;
    if (proto == 0 || proto == IPPROTO_UDP) return IPPROTO_UDP;
    return proto == icmp_proto(family) ? proto : 0;
}

/* the protocol of a real raw socket (SO_PROTOCOL), -1 if unknown */
static int real_raw_proto(int fd, int family)
{
    int proto = -1;
    socklen_t l = sizeof proto;
    (void)family;
    if (real_getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &l) < 0) return -1;
    return proto;
}

/* the family of a real AF_INET/AF_INET6 socket of ``type`` (datagram: UDP or ping; raw:
 * ICMP / ICMPv6), else 0 */
static int real_inet_family(int fd, int type)
{
    int v = 0, dom = 0;
    socklen_t l = sizeof v;
    if (real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l) < 0 || v != type) return 0;
    l = sizeof dom;
    if (real_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) < 0) return 0;
    if (dom != AF_INET && dom != AF_INET6) return 0;
    if (type == SOCK_DGRAM && !real_dgram_proto(fd, dom)) return 0;
    if (type == SOCK_RAW && real_raw_proto(fd, dom) != icmp_proto(dom)) return 0;
    return dom;
}

/* TCP and raw sockets of a process in an emulated namespace: a clear error */
static int inet_unsupported(int fd)
{
    static int said;
    int v = 0;
    socklen_t l = sizeof v;
    if (real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l) < 0) return 0;
    if (!real_inet_family(fd, v) || ((v == SOCK_DGRAM || v == SOCK_RAW) && real_inet_family(fd, v)))
        return 0;
    if (!said++)
        fprintf(stderr, "xfrmd shim: only UDP datagram sockets are carried by the emulated "
                "stack (namespace \"%s\"); TCP and raw sockets other than ICMP are not emulated\n",
                getenv("XFRMD_NETNS") ? getenv("XFRMD_NETNS") : "default");
    errno = EOPNOTSUPP;
    return 1;
}

static int inet_wait_reply(int fd, struct inetsock *is);

/* Wait for BIND_REPLY; nothing else can come first (an unbound socket receives nothing). */
static int inet_bind_exchange(int fd, struct inetsock *is, const struct sockaddr *addr,
                              socklen_t len)
{
    char buf[8 + 4 + sizeof(struct sockaddr_storage)];
    uint32_t reuse = is->reuse;
    if (addr && len > sizeof(struct sockaddr_storage)) len = sizeof(struct sockaddr_storage);
    size_t n = build_frame(buf, F_INET_BIND, &reuse, 4);
    if (addr) { memcpy(buf + n, addr, len); n += len; }
    if (real_send(fd, buf, n, MSG_NOSIGNAL) < 0) {
        if (errno == EPIPE || errno == ECONNRESET) server_gone(fd, &is->gone, "bind");
        return -1;
    }
    return inet_wait_reply(fd, is);
}

/* The BIND_REPLY to a BIND or CONNECT: errno, then the socket's local address. Datagrams
 * queued before it are skipped (a connect() normally precedes traffic). */
static int inet_wait_reply(int fd, struct inetsock *is)
{
    for (;;) {
        char r[64];
        ssize_t k = real_recv(fd, r, sizeof r, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = { .fd = fd, .events = POLLIN };
            poll(&p, 1, -1);
            continue;
        }
        if (k <= 0) { server_gone(fd, &is->gone, "bind"); return -1; }
        struct frame f; memcpy(&f, r, 8 < k ? 8 : (size_t)k);
        if (k < 12 || f.zero != 0 || f.kind != F_INET_BIND_REPLY) continue;
        int32_t err; memcpy(&err, r + 8, 4);
        if (err) { errno = -err; return -1; }
        is->bound = 1;
        is->locallen = (socklen_t)(k - 12) < sizeof is->local ? (socklen_t)(k - 12) : sizeof is->local;
        memcpy(&is->local, r + 12, is->locallen);
        return 0;
    }
}

static int inet_frame(int fd, struct inetsock *is, uint16_t kind, const void *payload, size_t n)
{
    char buf[8 + 8 + 256];
    if (n > sizeof buf - 8) { errno = EINVAL; return -1; }
    if (real_send(fd, buf, build_frame(buf, kind, payload, n), MSG_NOSIGNAL) < 0) {
        if (errno == EPIPE || errno == ECONNRESET) server_gone(fd, &is->gone, "send");
        return -1;
    }
    return 0;
}

static int inet_setsockopt_frame(int fd, struct inetsock *is, int level, int optname,
                                 const void *val, size_t len)
{
    char p[8 + 64];
    uint32_t lv[2] = { (uint32_t)level, (uint32_t)optname };
    if (len > 64) len = 64;
    memcpy(p, lv, 8);
    if (len) memcpy(p + 8, val, len);
    return inet_frame(fd, is, F_INET_SETSOCKOPT, p, 8 + len);
}

/* A connection for an emulated socket of ``family``/``proto``, HELLO sent; -1 with errno. */
static int inet_dial(int family, int proto, int type, int flags)
{
    int c = server_dial(flags);
    if (c < 0) { complain("socket(AF_INET, SOCK_DGRAM)"); return -1; }
    char msg[8 + 8 + 256 + 8];
    const char *ns = getenv("XFRMD_NETNS");
    if (!ns) ns = "";
    size_t nlen = strnlen(ns, 250);
    uint32_t w[2] = { INET_PROTOCOL, (uint32_t)type }, fp[2] = { (uint32_t)family, (uint32_t)proto };
    size_t o = build_frame(msg, F_HELLO, w, 8);
    memcpy(msg + o, ns, nlen); o += nlen; msg[o++] = 0;
    memcpy(msg + o, fp, 8); o += 8;
    if (real_send(c, msg, o, MSG_NOSIGNAL) < 0) {
        complain("socket(AF_INET, SOCK_DGRAM)");
        real_close(c); errno = ECONNREFUSED; return -1;
    }
    return c;
}

/* socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP) (or AF_INET6, IPPROTO_ICMPV6) in an emulated
 * namespace: a ping socket of the emulated stack from the start (the host may refuse
 * ping sockets, net.ipv4.ping_group_range) */
static int inet_socket(int family, int proto, int type)
{
    int fd = inet_dial(family, proto, type & ~(SOCK_CLOEXEC | SOCK_NONBLOCK),
                       type & (SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (fd < 0) return -1;
    if (fd >= MAXFD) { real_close(fd); errno = EMFILE; return -1; }
    struct inetsock *is = calloc(1, sizeof *is);
    if (!is) { real_close(fd); errno = ENOMEM; return -1; }
    is->family = family; is->proto = proto; is->refs = 1;
    is->type = type & ~(SOCK_CLOEXEC | SOCK_NONBLOCK);
    in_release(fd);
    intab[fd] = is;
    return fd;
}

/* The program's real socket ``fd`` becomes an INET connection (bound to ``addr`` if given);
 * NULL with errno, the real socket left as it was, if the server refuses. */
static struct inetsock *inet_convert(int fd, int family, const struct sockaddr *addr,
                                     socklen_t len)
{
    int type = SOCK_DGRAM;
    socklen_t tl = sizeof type;
    if (real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0) type = SOCK_DGRAM;
    int proto = type == SOCK_RAW ? icmp_proto(family) : real_dgram_proto(fd, family);
    int c = inet_dial(family, proto, type, SOCK_CLOEXEC);
    if (c < 0) return NULL;
    struct inetsock *is = calloc(1, sizeof *is);
    if (!is) { real_close(c); errno = ENOMEM; return NULL; }
    is->family = family; is->proto = proto; is->type = type;
    /* what the program set on the real socket before */
    int v = 0;
    socklen_t l = sizeof v;
    if (real_getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &l) == 0 && v) is->reuse |= 1;
    l = sizeof v; v = 0;
    if (real_getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &v, &l) == 0 && v) is->reuse |= 2;
    char dev[IF_NAMESIZE + 1] = "";
    l = IF_NAMESIZE;
    if (real_getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, &l) == 0 && dev[0]) {
        inet_setsockopt_frame(c, is, SOL_SOCKET, SO_BINDTODEVICE, dev, strnlen(dev, IF_NAMESIZE) + 1);
        memcpy(is->dev, dev, IF_NAMESIZE);
    }
    if (addr && inet_bind_exchange(c, is, addr, len) < 0) {
        int e = errno;
        real_close(c); free(is);
        errno = e == ECONNREFUSED ? EADDRNOTAVAIL : e;
        return NULL;
    }
    l = sizeof v; v = 0;
    if (real_getsockopt(fd, SOL_SOCKET, SO_BROADCAST, &v, &l) == 0 && v) {
        real_setsockopt(c, SOL_SOCKET, SO_BROADCAST, &v, sizeof v);
        inet_setsockopt_frame(c, is, SOL_SOCKET, SO_BROADCAST, &v, sizeof v);
    }
    struct timeval tv;
    l = sizeof tv;
    if (real_getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &l) == 0) real_setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, l);
    l = sizeof tv;
    if (real_getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &l) == 0) real_setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, l);
    int fl = real_fcntl(fd, F_GETFL), fdfl = real_fcntl(fd, F_GETFD);
    if (syscall(SYS_dup3, c, fd, (fdfl >= 0 && (fdfl & FD_CLOEXEC)) ? O_CLOEXEC : 0) < 0) {
        int e = errno;
        real_close(c); free(is); errno = e; return NULL;
    }
    real_close(c);
    if (fl >= 0 && (fl & O_NONBLOCK)) real_fcntl(fd, F_SETFL, O_NONBLOCK);
    in_release(fd);
    is->refs = 1;
    intab[fd] = is;
    return is;
}

/* the family of a real socket the emulated stack can carry: UDP, ping or raw ICMP; else 0 */
static int real_emulable_family(int fd)
{
    int fam = real_inet_family(fd, SOCK_DGRAM);
    return fam ? fam : real_inet_family(fd, SOCK_RAW);
}

/* in an emulated namespace, a real UDP socket's first use converts it; NULL: not such a case */
static struct inetsock *inet_adopt(int fd, int need_mode)
{
    if (inet_off() || (need_mode && !inet_mode())) return NULL;
    int fam = real_emulable_family(fd);
    if (!fam) return NULL;
    return inet_convert(fd, fam, NULL, 0);
}

static int inet_autobind(int fd, struct inetsock *is)
{
    return is->bound ? 0 : inet_bind_exchange(fd, is, NULL, 0);
}

static int inet_check_addr(struct inetsock *is, const struct sockaddr *a, socklen_t al)
{
    if (!a || al < sizeof(sa_family_t)) { errno = EINVAL; return -1; }
    if (a->sa_family != is->family) { errno = EAFNOSUPPORT; return -1; }
    if (al < sa_len(is->family)) { errno = EINVAL; return -1; }
    return 0;
}

static int inet_bind(int fd, struct inetsock *is, const struct sockaddr *a, socklen_t al)
{
    if (inet_check_addr(is, a, al) < 0) return -1;
    if (is->bound) { errno = EINVAL; return -1; }         /* inet_bind: already bound */
    return inet_bind_exchange(fd, is, a, sa_len(is->family));
}

static int inet_connect(int fd, struct inetsock *is, const struct sockaddr *a, socklen_t al)
{
    if (a && al >= sizeof(sa_family_t) && a->sa_family == AF_UNSPEC) {
        is->connected = 0;
        if (inet_frame(fd, is, F_INET_CONNECT, a, sizeof(sa_family_t)) < 0) return -1;
        return inet_wait_reply(fd, is);
    }
    if (inet_check_addr(is, a, al) < 0 || inet_autobind(fd, is) < 0) return -1;
    socklen_t n = sa_len(is->family);
    /* ip4_datagram_connect: the route's error, or the source address it picked */
    if (inet_frame(fd, is, F_INET_CONNECT, a, n) < 0 || inet_wait_reply(fd, is) < 0) return -1;
    memcpy(&is->peer, a, n);
    is->peerlen = n;
    is->connected = 1;
    return 0;
}

static void inet_name(struct inetsock *is, const struct sockaddr_storage *ss, socklen_t sl,
                      struct sockaddr *addr, socklen_t *len)
{
    struct sockaddr_storage any;
    if (!sl) {
        memset(&any, 0, sizeof any);
        any.ss_family = (sa_family_t)is->family;
        ss = &any; sl = sa_len(is->family);
        /* a raw socket's "port" is its protocol (inet_create: inet_sport) */
        if (is->type == SOCK_RAW) ((struct sockaddr_in *)&any)->sin_port = htons((uint16_t)is->proto);
    }
    if (!addr || !len) return;
    memcpy(addr, ss, *len < sl ? *len : sl);
    *len = sl;
}

static void json_escape(const char *s, size_t n, char *out, size_t on);

/* an address of ``sa`` as text ("" for a wildcard) and its port */
static void inet_text(int family, const struct sockaddr *sa, char *out, size_t n, int *port)
{
    static const unsigned char zero[16];
    const void *a = family == AF_INET ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                                      : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    *port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    out[0] = 0;
    if (memcmp(a, zero, family == AF_INET ? 4 : 16)) inet_ntop(family, a, out, (socklen_t)n);
}

/* The errors sendmsg returns at once (xfrmd/inet/sendmsg.py): a UDP datagram to port 0 and
 * a ping socket's message that is no echo request are EINVAL (udp_sendmsg,
 * ping_common_sendmsg); the route's error, EACCES for a broadcast without SO_BROADCAST and
 * EPERM for a blocking policy are the server's answer to service op inet_send_check (asked
 * here: an answer on the INET connection would queue behind received datagrams). */
static int inet_send_check(int fd, struct inetsock *is, const struct sockaddr *to,
                           const unsigned char *data, size_t len)
{
    const struct sockaddr *dst = to ? to : (const struct sockaddr *)&is->peer;
    char d[INET6_ADDRSTRLEN] = "", src[INET6_ADDRSTRLEN] = "", dev[2 * IF_NAMESIZE + 8];
    int dport = 0, sport = 0, b = 0;
    inet_text(is->family, dst, d, sizeof d, &dport);
    if (is->proto == IPPROTO_UDP && dport == 0) { errno = EINVAL; return -1; }
    if (is->type == SOCK_DGRAM && is->proto != IPPROTO_UDP &&
        (len < 8 || data[0] != (is->family == AF_INET ? 8 : 128) || data[1] != 0)) {
        errno = EINVAL; return -1;
    }
    if (is->locallen) inet_text(is->family, (const struct sockaddr *)&is->local, src, sizeof src, &sport);
    socklen_t l = sizeof b;
    if (real_getsockopt(fd, SOL_SOCKET, SO_BROADCAST, &b, &l) < 0) b = 0;
    json_escape(is->dev, strnlen(is->dev, IF_NAMESIZE), dev, sizeof dev);
    char q[512], out[256];
    snprintf(q, sizeof q, "{\"op\":\"inet_send_check\",\"dst\":\"%s\",\"src\":\"%s\",\"dev\":\"%s\","
             "\"broadcast\":%d,\"proto\":%d,\"sport\":%d,\"dport\":%d,\"len\":%zu,\"dontfrag\":%d}",
             d, src, dev, b != 0, is->proto, sport, dport, len,
             is->pmtudisc == IP_PMTUDISC_DO || is->pmtudisc == IP_PMTUDISC_PROBE);
    if (service_query(q, out, sizeof out) < 0) return 0;      /* cannot ask: it goes */
    long e = json_int(out, "errno", 0);
    if (e == EMSGSIZE && is->recverr) {
        /* ip_local_error: the error queue says which MTU it did not fit */
        is->lerr = EMSGSIZE;
        is->lerr_info = (int)json_int(out, "mtu", 0);
        memcpy(&is->lerr_dst, dst, sa_len(is->family));
        is->lerr_len = len < sizeof is->lerr_data ? len : sizeof is->lerr_data;
        memcpy(is->lerr_data, data, is->lerr_len);
    }
    if (e) { errno = (int)e; return -1; }
    return 0;
}

/* recvmsg(MSG_ERRQUEUE) (ip_recv_error / ipv6_recv_error): the queued local error — the
 * datagram's start, its destination as msg_name, and an IP_RECVERR / IPV6_RECVERR control
 * message (sock_extended_err, origin SO_EE_ORIGIN_LOCAL, no offender); EAGAIN when empty. */
static ssize_t in_recv_errqueue(struct inetsock *is, struct msghdr *msg)
{
    if (!is->lerr) { errno = EAGAIN; return -1; }
    size_t o = 0;
    for (size_t i = 0; i < (size_t)msg->msg_iovlen && o < is->lerr_len; i++) {
        size_t c = msg->msg_iov[i].iov_len < is->lerr_len - o ? msg->msg_iov[i].iov_len : is->lerr_len - o;
        memcpy(msg->msg_iov[i].iov_base, is->lerr_data + o, c);
        o += c;
    }
    if (msg->msg_name) {
        socklen_t n = sa_len(is->family);
        memcpy(msg->msg_name, &is->lerr_dst, msg->msg_namelen < n ? msg->msg_namelen : n);
        msg->msg_namelen = n;
    }
    size_t room = msg->msg_controllen, body = sizeof(struct sock_extended_err) + sa_len(is->family);
    msg->msg_controllen = 0;
    msg->msg_flags = MSG_ERRQUEUE | (o < is->lerr_len ? MSG_TRUNC : 0);
    if (msg->msg_control && room >= CMSG_SPACE(body)) {
        struct cmsghdr *c = (struct cmsghdr *)msg->msg_control;
        memset(c, 0, CMSG_SPACE(body));
        c->cmsg_level = is->family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
        c->cmsg_type = is->family == AF_INET ? IP_RECVERR : IPV6_RECVERR;
        c->cmsg_len = CMSG_LEN(body);
        struct sock_extended_err ee = { .ee_errno = (uint32_t)is->lerr,
                                        .ee_origin = SO_EE_ORIGIN_LOCAL,
                                        .ee_info = (uint32_t)is->lerr_info };
        memcpy(CMSG_DATA(c), &ee, sizeof ee);      /* the offender: AF_UNSPEC, zeros */
        msg->msg_controllen = CMSG_SPACE(body);
    } else if (msg->msg_control) {
        msg->msg_flags |= MSG_CTRUNC;
    }
    is->lerr = 0;
    return (ssize_t)o;
}

static ssize_t in_send(int fd, struct inetsock *is, const struct iovec *iov, size_t iovcnt,
                       int flags, const struct sockaddr *to, socklen_t tolen)
{
    if (is->gone) { errno = ECONNREFUSED; return -1; }
    if (flags & MSG_OOB) { errno = EOPNOTSUPP; return -1; }
    size_t total = 0;
    for (size_t i = 0; i < iovcnt; i++) total += iov[i].iov_len;
    if (total > (is->type == SOCK_RAW ? 0xFFFFu : UDP_MAX_PAYLOAD)) { errno = EMSGSIZE; return -1; }
    socklen_t alen = 0;
    if (to) {
        if (inet_check_addr(is, to, tolen) < 0) return -1;
        alen = sa_len(is->family);
    } else if (!is->connected) {
        errno = EDESTADDRREQ; return -1;
    }
    if (inet_autobind(fd, is) < 0) return -1;
    char *buf = malloc(8 + 4 + alen + total);
    if (!buf) { errno = ENOMEM; return -1; }
    uint32_t al = alen;
    size_t o = build_frame(buf, F_INET_SEND, &al, 4);
    if (alen) { memcpy(buf + o, to, alen); o += alen; }
    size_t data_at = o;
    for (size_t i = 0; i < iovcnt; i++) { memcpy(buf + o, iov[i].iov_base, iov[i].iov_len); o += iov[i].iov_len; }
    if (inet_send_check(fd, is, to, (const unsigned char *)buf + data_at, total) < 0) {
        int e = errno;
        free(buf); errno = e; return -1;
    }
    ssize_t w = real_send(fd, buf, o, MSG_NOSIGNAL | (flags & MSG_DONTWAIT));
    free(buf);
    if (w < 0) {
        if (errno == EPIPE || errno == ECONNRESET) server_gone(fd, &is->gone, "send");
        return -1;
    }
    return (ssize_t)total;
}

static ssize_t in_recv(int fd, struct inetsock *is, struct iovec *iov, size_t iovcnt, int flags,
                       struct sockaddr *from, socklen_t *fromlen, int *msg_flags)
{
    if (is->gone) { errno = ECONNREFUSED; return -1; }
    if (flags & MSG_ERRQUEUE) { errno = EAGAIN; return -1; }   /* nothing on the error queue */
    if (flags & MSG_OOB) { errno = EOPNOTSUPP; return -1; }
    size_t want = 0;
    for (size_t i = 0; i < iovcnt; i++) want += iov[i].iov_len;
    unsigned char *buf = malloc(RECORD_MAX);
    if (!buf) { errno = ENOMEM; return -1; }
    ssize_t n;
    uint32_t alen = 0;
    for (;;) {
        n = real_recv(fd, buf, RECORD_MAX, flags & (MSG_PEEK | MSG_DONTWAIT));
        if (n < 0 && errno != ECONNRESET) { free(buf); return -1; }
        if (n <= 0) { free(buf); server_gone(fd, &is->gone, "recv"); return -1; }
        struct frame f; memcpy(&f, buf, n < 8 ? (size_t)n : 8);
        int dgram = n >= 12 && f.zero == 0 && f.kind == F_INET_DGRAM;
        if (dgram) {
            memcpy(&alen, buf + 8, 4);
            if (alen <= (size_t)n - 12) break;
        }
        if (flags & MSG_PEEK) { char t[64]; real_recv(fd, t, sizeof t, MSG_DONTWAIT); }
        if (n >= 12 && f.zero == 0 && f.kind == F_SOCK_ERROR) {
            int32_t e; memcpy(&e, buf + 8, 4);
            free(buf); errno = -e; return -1;
        }
    }
    const unsigned char *data = buf + 12 + alen;
    size_t dlen = (size_t)n - 12 - alen;
    size_t copy = dlen < want ? dlen : want, o = 0;
    for (size_t i = 0; i < iovcnt && o < copy; i++) {
        size_t c = iov[i].iov_len < copy - o ? iov[i].iov_len : copy - o;
        memcpy(iov[i].iov_base, data + o, c);
        o += c;
    }
    if (msg_flags) *msg_flags = dlen > want ? MSG_TRUNC : 0;
    if (from && fromlen) {
        memcpy(from, buf + 12, *fromlen < alen ? *fromlen : alen);
        *fromlen = alen;
    }
    free(buf);
    return (flags & MSG_TRUNC) ? (ssize_t)dlen : (ssize_t)copy;
}

/* The control messages of a received datagram (ip_cmsg_recv, ip6_datagram_recv_ctl):
 * IP_TTL / IPV6_HOPLIMIT when asked for — 64, what every emulated sender uses (nothing
 * forwards, nothing decrements it). Others are not given: ping falls back to SIOCGSTAMP /
 * gettimeofday. */
static void in_cmsgs(struct inetsock *is, struct msghdr *msg, ssize_t r)
{
    size_t room = msg->msg_controllen;
    msg->msg_controllen = 0;
    int v6 = is->family == AF_INET6;
    if (r < 0 || !(v6 ? is->recv_hoplimit : is->recv_ttl) || !msg->msg_control ||
        room < CMSG_SPACE(sizeof(int)))
        return;
    struct cmsghdr *c = (struct cmsghdr *)msg->msg_control;
    memset(c, 0, CMSG_SPACE(sizeof(int)));
    c->cmsg_level = v6 ? IPPROTO_IPV6 : IPPROTO_IP;
    c->cmsg_type = v6 ? IPV6_HOPLIMIT : IP_TTL;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    int hl = 64;
    memcpy(CMSG_DATA(c), &hl, sizeof hl);
    msg->msg_controllen = CMSG_SPACE(sizeof(int));
}

/* bytes of the next datagram (FIONREAD / SIOCINQ), 0 if none */
static int in_pending(int fd)
{
    unsigned char *buf = malloc(RECORD_MAX);
    if (!buf) return 0;
    ssize_t n = real_recv(fd, buf, RECORD_MAX, MSG_PEEK | MSG_DONTWAIT);
    int r = 0;
    struct frame f;
    if (n >= 12) {
        memcpy(&f, buf, 8);
        uint32_t alen; memcpy(&alen, buf + 8, 4);
        if (f.zero == 0 && f.kind == F_INET_DGRAM && alen <= (size_t)n - 12) r = (int)(n - 12 - alen);
    }
    free(buf);
    return r;
}

/* the ICMP filter option of a raw socket: SOL_RAW ICMP_FILTER (IPv4), SOL_ICMPV6
 * ICMP6_FILTER (IPv6), both option 1 */
static int raw_filter_opt(struct inetsock *is, int level, int optname)
{
    return optname == 1 && level == (is->family == AF_INET ? SOL_RAW : IPPROTO_ICMPV6);
}

static int in_setsockopt(int fd, struct inetsock *is, int level, int optname, const void *val,
                         socklen_t len)
{
    if (is->type == SOCK_RAW && raw_filter_opt(is, level, optname)) {
        /* ICMP_FILTER / ICMP6_FILTER (raw_seticmpfilter): kept by the server */
        if (!val) { errno = EFAULT; return -1; }
        return inet_setsockopt_frame(fd, is, level, optname, val, len);
    }
    if ((level == IPPROTO_IP && optname == IP_RECVERR) ||
        (level == IPPROTO_IPV6 && optname == IPV6_RECVERR)) {
        int v = 0;
        if (!val || len < sizeof v) { errno = EINVAL; return -1; }
        memcpy(&v, val, sizeof v);
        is->recverr = v != 0;
        if (!v) is->lerr = 0;            /* ip_setsockopt: turning it off purges the queue */
        return 0;
    }
    if ((level == IPPROTO_IP && optname == IP_MTU_DISCOVER) ||
        (level == IPPROTO_IPV6 && optname == IPV6_MTU_DISCOVER)) {
        int v = 0;
        if (!val || len < sizeof v) { errno = EINVAL; return -1; }
        memcpy(&v, val, sizeof v);
        if (v < IP_PMTUDISC_DONT || v > IP_PMTUDISC_OMIT) { errno = EINVAL; return -1; }
        is->pmtudisc = v;
        return 0;
    }
    if ((level == IPPROTO_IPV6 && optname == IPV6_RECVHOPLIMIT && is->family == AF_INET6) ||
        (level == IPPROTO_IP && optname == IP_RECVTTL)) {
        int v = 0;
        if (!val || len < sizeof v) { errno = EINVAL; return -1; }
        memcpy(&v, val, sizeof v);
        if (level == IPPROTO_IP) is->recv_ttl = v != 0;
        else is->recv_hoplimit = v != 0;
        return 0;
    }
    if (level != SOL_SOCKET) return 0;      /* IP/IPv6/UDP options: accepted, not modelled */
    switch (optname) {
    case SO_BINDTODEVICE: {
        char name[IF_NAMESIZE + 1] = "";
        if (val && len) memcpy(name, val, len < IF_NAMESIZE ? len : IF_NAMESIZE);
        if (name[0] && !if_nametoindex(name)) { errno = ENODEV; return -1; }
        memcpy(is->dev, name, sizeof is->dev);
        return inet_setsockopt_frame(fd, is, level, optname, name, strlen(name) + 1);
    }
    case SO_REUSEADDR: case SO_REUSEPORT: {
        int v = 0;
        if (!val || len < sizeof v) { errno = EINVAL; return -1; }
        memcpy(&v, val, sizeof v);
        uint32_t bit = optname == SO_REUSEADDR ? 1 : 2;
        is->reuse = v ? (is->reuse | bit) : (is->reuse & ~bit);
        return inet_setsockopt_frame(fd, is, level, optname, &v, sizeof v);
    }
    case SO_BROADCAST: {
        /* kept on the connection (getsockopt, the send check) and told to the server
         * (ip4_datagram_connect's EACCES for a broadcast peer without it) */
        int v = 0;
        if (!val || len < sizeof v) { errno = EINVAL; return -1; }
        memcpy(&v, val, sizeof v);
        if (real_setsockopt(fd, level, optname, val, len) < 0) return -1;
        return inet_setsockopt_frame(fd, is, level, optname, &v, sizeof v);
    }
    default: {
        /* timeouts and buffer sizes act on the connection itself */
        int r = real_setsockopt(fd, level, optname, val, len);
        if (r < 0 && errno == ENOPROTOOPT) return 0;
        return r;
    }
    }
}

static int in_getsockopt(int fd, struct inetsock *is, int level, int optname, void *val,
                         socklen_t *len)
{
    int v = 0;
    if (level == SOL_SOCKET) {
        switch (optname) {
        case SO_TYPE: v = is->type ? is->type : SOCK_DGRAM; break;
        case SO_DOMAIN: v = is->family; break;
        case SO_PROTOCOL: v = is->proto; break;
        case SO_ERROR: v = 0; break;
        case SO_REUSEADDR: v = is->reuse & 1; break;
        case SO_REUSEPORT: v = (is->reuse >> 1) & 1; break;
        default: return real_getsockopt(fd, level, optname, val, len);
        }
    }
    if (!val || !len || *len < sizeof(int)) { errno = EINVAL; return -1; }
    memcpy(val, &v, sizeof v);
    *len = sizeof v;
    return 0;
}

/* ping_init_sock: the process's effective group or one of its groups lies in the emulated
 * namespace's net.ipv4.ping_group_range (asked as a file; 1 if the server cannot say) */
static int ping_group_ok(void)
{
    char out[512];
    if (service_query("{\"op\":\"read_file\",\"path\":\"/proc/sys/net/ipv4/ping_group_range\"}",
                      out, sizeof out) < 0 || json_int(out, "errno", 0))
        return 1;
    char text[64] = "";
    const char *p = json_find(out, "data");
    if (p) json_str_at(p, text, sizeof text);
    unsigned long lo = 1, hi = 0;
    if (sscanf(text, "%lu %lu", &lo, &hi) != 2) return 1;
    gid_t g = getegid();
    if (g >= lo && g <= hi) return 1;
    gid_t groups[256];
    int n = getgroups(256, groups);
    for (int i = 0; i < n; i++)
        if (groups[i] >= lo && groups[i] <= hi) return 1;
    return 0;
}

/* inet_create: a raw socket needs CAP_NET_RAW; the emulated kernel's answer for
 * CAP_NET_ADMIN stands in for it (root has both) */
static int raw_capable(void)
{
    caps_load();
    return cap_admin;
}

/* ---- socket calls --------------------------------------------------------------------- */
int socket(int domain, int type, int protocol)
{
    load_all();
    if ((domain == AF_INET || domain == AF_INET6) && !inet_off() &&
        (type & ~(SOCK_CLOEXEC | SOCK_NONBLOCK)) == SOCK_DGRAM && protocol == icmp_proto(domain)) {
        /* a ping socket: the emulated stack's in an emulated namespace, or when the host
         * does not let this process have one (net.ipv4.ping_group_range: EACCES); either
         * way only if the emulated namespace's ping_group_range lets it (ping_init_sock) */
        if (inet_mode()) {
            if (!ping_group_ok()) { errno = EACCES; return -1; }
            return inet_socket(domain, protocol, type);
        }
        int fd = real_socket(domain, type, protocol);
        if (fd >= 0 || errno != EACCES) return fd;
        if (!ping_group_ok()) { errno = EACCES; return -1; }
        return inet_socket(domain, protocol, type);
    }
    if ((domain == AF_INET || domain == AF_INET6) && inet_mode() &&
        (type & ~(SOCK_CLOEXEC | SOCK_NONBLOCK)) == SOCK_RAW && protocol == icmp_proto(domain)) {
        /* a raw ICMP socket in an emulated namespace (root's ping) */
        if (!raw_capable()) { errno = EPERM; return -1; }          /* inet_create */
        return inet_socket(domain, protocol, type);
    }
    if (domain != AF_NETLINK || (protocol != NETLINK_XFRM && protocol != NETLINK_ROUTE &&
                                 protocol != NETLINK_GENERIC))
        return real_socket(domain, type, protocol);
    int base = type & ~(SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (base != SOCK_RAW && base != SOCK_DGRAM) { errno = ESOCKTNOSUPPORT; return -1; }
    uint64_t ino = 0;
    int owed = 0, keep = -1;
    int fd = pool_get(type, &ino, &owed, &keep), fresh = fd < 0;
    if (fd < 0) {
        fd = server_dial(type & (SOCK_CLOEXEC | SOCK_NONBLOCK));
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0) ino = (uint64_t)st.st_ino;
    }
    if (fd < 0) { complain("socket(AF_NETLINK)"); return -1; }
    if (fd >= MAXFD) {
        real_close(fd);
        if (keep >= 0) real_close(keep);
        errno = EMFILE; return -1;
    }
    struct nlsock *s = nlsock_new();
    char hello[8 + 8 + 256 + 1024];
    size_t hlen = build_hello_ino(hello, (uint32_t)protocol, (uint32_t)base, NULL, ino);
    if (s && fresh) {
        /* a fresh connection says HELLO at once: the server closes connections that stay
         * silent (docs/protocol.md, "Flow control"), and a program may keep an unused
         * socket for hours. A kept connection was greeted before; its HELLO waits for the
         * first datagram like the rest. */
        if (real_send(fd, hello, hlen, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
            complain("socket(AF_NETLINK)");
            free(s); real_close(fd); errno = ECONNREFUSED; return -1;
        }
        s->hello_sent = 1;
    } else {
        char rel[8];
        if (!s || (owed && queue_record(s, rel, build_frame(rel, F_RELEASE, NULL, 0)) < 0) ||
            queue_record(s, hello, hlen) < 0) {
            if (s) free(s->out);
            free(s); real_close(fd);
            if (keep >= 0) real_close(keep);
            errno = ENOMEM; return -1;
        }
        s->release_owed = owed;
    }
    s->protocol = protocol; s->type = base;
    s->rcvbuf = 212992; s->sndbuf = 212992;
    s->refs = 1;
    s->gen = fork_gen;
    s->ino = ino;
    s->keep_fd = keep;
    s->nb = (type & SOCK_NONBLOCK) != 0;
    release(fd);             /* a stale entry (the fd was closed behind our back) */
    nl_register(fd, s);
    return fd;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    load_all();
    struct nlsock *s = nl_of(fd);
    if (!s) {
        struct inetsock *is = in_of(fd);
        if (is) return inet_bind(fd, is, addr, len);
        if (!addr || len < sizeof(sa_family_t) || inet_off() ||
            (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
            return real_bind(fd, addr, len);
        if (inet_mode()) {
            int fam = real_emulable_family(fd);
            if (fam) return inet_convert(fd, fam, addr, len) ? 0 : -1;
            if (inet_unsupported(fd)) return -1;
        }
        int r = real_bind(fd, addr, len);
        if (r == 0 || errno != EADDRNOTAVAIL) return r;
        /* an address the host lacks: the emulated namespace's, if it has it */
        int fam = real_emulable_family(fd);
        if (fam && inet_convert(fd, fam, addr, len)) return 0;
        errno = EADDRNOTAVAIL;
        return -1;
    }
    if (!addr || len < sizeof(struct sockaddr_nl) || addr->sa_family != AF_NETLINK) {
        errno = EINVAL; return -1;
    }
    const struct sockaddr_nl *nl = (const void *)addr;
    if (nl->nl_groups && !may_join(s->protocol)) { errno = EPERM; return -1; }  /* netlink_bind */
    if (!s->bound && nl->nl_pid == 0 && !auto_off) {
        auto_check_pid();
        int k = proto_slot(s->protocol);
        if (auto_ok[k] && pid_ports[k] == 0) {
            uint32_t p[2] = { (uint32_t)auto_pid, nl->nl_groups };
            if ((nl->nl_groups ? send_frame_now(fd, s, F_BIND_AUTO, p, 8)
                               : defer_frame(fd, s, F_BIND_AUTO, p, 8)) < 0) return -1;
            s->bound = 1; s->portid = (uint32_t)auto_pid; s->groups = nl->nl_groups;
            pid_ports[k]++;
            return 0;
        }
    }
    if (!s->bound) return bind_exchange(fd, s, F_BIND, nl->nl_pid, nl->nl_groups);
    if (nl->nl_pid && nl->nl_pid != s->portid) { errno = EINVAL; return -1; }
    uint32_t p[2] = { s->portid, nl->nl_groups };
    s->groups = nl->nl_groups;
    return send_frame_now(fd, s, F_BIND, p, 8);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    load_all();
    struct nlsock *s = nl_of(fd);
    if (!s) {
        struct inetsock *is = in_of(fd);
        if (!is && inet_mode() && addr && len >= sizeof(sa_family_t) &&
            (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
            if (inet_unsupported(fd)) return -1;
            is = inet_adopt(fd, 1);
        }
        if (is) return inet_connect(fd, is, addr, len);
        return real_connect(fd, addr, len);
    }
    if (addr && addr->sa_family == AF_UNSPEC) return 0;
    return ensure_bound(fd, s);
}

static void fill_nl(struct sockaddr *addr, socklen_t *len, uint32_t pid, uint32_t groups)
{
    struct sockaddr_nl nl = { .nl_family = AF_NETLINK, .nl_pid = pid, .nl_groups = groups };
    if (!addr || !len) return;
    memcpy(addr, &nl, *len < sizeof nl ? *len : sizeof nl);
    *len = sizeof nl;
}

int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
    load_all();
    struct nlsock *s = nl_of(fd);
    struct inetsock *is = in_of(fd);
    if (is) { inet_name(is, &is->local, is->locallen, addr, len); return 0; }
    if (!s) return real_getsockname(fd, addr, len);
    fill_nl(addr, len, s->portid, s->groups);
    return 0;
}

int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
    load_all();
    struct nlsock *s = nl_of(fd);
    struct inetsock *is = in_of(fd);
    if (is) {
        if (!is->connected) { errno = ENOTCONN; return -1; }
        inet_name(is, &is->peer, is->peerlen, addr, len);
        return 0;
    }
    if (!s) return real_getpeername(fd, addr, len);
    fill_nl(addr, len, 0, 0);
    return 0;
}

/* sk_rcvbuf / sk_sndbuf after SO_RCVBUF(FORCE) / SO_SNDBUF(FORCE) as sock_setsockopt sets
 * them: the plain option compares the value as unsigned with the emulated kernel's
 * rmem_max / wmem_max (212992, the Linux default), FORCE takes a negative value as 0; then
 * doubled, at most INT_MAX, at least SOCK_MIN_RCVBUF (2304) / SOCK_MIN_SNDBUF (4608). */
static int sock_bufsize(int v, int force, int min)
{
    unsigned u = force ? (v < 0 ? 0u : (unsigned)v) : ((unsigned)v > 212992u ? 212992u : (unsigned)v);
    if (u > INT32_MAX / 2) u = INT32_MAX / 2;
    return (int)(u * 2) < min ? min : (int)(u * 2);
}

int setsockopt(int fd, int level, int optname, const void *val, socklen_t len)
{
    load_all();
    struct nlsock *s = nl_of(fd);
    if (!s) {
        struct inetsock *is = in_of(fd);
        if (!is && level == SOL_SOCKET && optname == SO_BINDTODEVICE && !inet_off()) {
            /* in an emulated namespace, or a device only the emulated kernel has */
            is = inet_adopt(fd, 1);
            if (!is) {
                int r = real_setsockopt(fd, level, optname, val, len);
                if (r == 0 || errno != ENODEV) return r;
                char name[IF_NAMESIZE + 1] = "";
                if (val && len) memcpy(name, val, len < IF_NAMESIZE ? len : IF_NAMESIZE);
                if (!name[0] || !if_nametoindex(name) || !(is = inet_adopt(fd, 0))) {
                    errno = ENODEV;
                    return -1;
                }
            }
        }
        if (is) return in_setsockopt(fd, is, level, optname, val, len);
        return real_setsockopt(fd, level, optname, val, len);
    }
    int v = 0;
    if (val && len >= sizeof(int)) memcpy(&v, val, sizeof v);
    if (level == SOL_SOCKET) {
        switch (optname) {
        case SO_RCVBUF: case SO_RCVBUFFORCE:
            if (optname == SO_RCVBUFFORCE) {       /* sk_setsockopt: capable(CAP_NET_ADMIN) */
                caps_load();
                if (!cap_admin_init) { errno = EPERM; return -1; }
            }
            s->rcvbuf = sock_bufsize(v, optname == SO_RCVBUFFORCE, 2304);
            break;
        case SO_SNDBUF: case SO_SNDBUFFORCE:
            if (optname == SO_SNDBUFFORCE) {       /* sk_setsockopt: capable(CAP_NET_ADMIN) */
                caps_load();
                if (!cap_admin_init) { errno = EPERM; return -1; }
            }
            s->sndbuf = sock_bufsize(v, optname == SO_SNDBUFFORCE, 4608);
            return 0;
        default:
            return 0;
        }
    } else if (level == SOL_NETLINK) {
        if (!val || len < sizeof(int)) { errno = EINVAL; return -1; }
        if (optname == NETLINK_ADD_MEMBERSHIP || optname == NETLINK_DROP_MEMBERSHIP) {
            if (!may_join(s->protocol)) { errno = EPERM; return -1; }   /* netlink_setsockopt */
            if (ensure_bound(fd, s) < 0) return -1;
            if (v > 0 && v <= 32) {
                if (optname == NETLINK_ADD_MEMBERSHIP) s->groups |= 1u << (v - 1);
                else s->groups &= ~(1u << (v - 1));
            }
        } else if (optname >= 0 && optname < 16) {
            s->opts[optname] = v ? 1 : 0;
        }
    } else {
        return 0;
    }
    uint32_t p[3] = { (uint32_t)level, (uint32_t)optname, (uint32_t)v };
    if (level == SOL_NETLINK && (optname == NETLINK_ADD_MEMBERSHIP || optname == NETLINK_DROP_MEMBERSHIP))
        return send_frame_now(fd, s, F_SETSOCKOPT, p, 12);
    return defer_frame(fd, s, F_SETSOCKOPT, p, 12);
}

int getsockopt(int fd, int level, int optname, void *val, socklen_t *len)
{
    load_all();
    struct nlsock *s = nl_of(fd);
    struct inetsock *is = in_of(fd);
    if (is) return in_getsockopt(fd, is, level, optname, val, len);
    if (!s) return real_getsockopt(fd, level, optname, val, len);
    int v = 0;
    if (level == SOL_SOCKET) {
        switch (optname) {
        case SO_RCVBUF: v = s->rcvbuf; break;
        case SO_SNDBUF: v = s->sndbuf; break;
        case SO_TYPE: v = s->type; break;
        case SO_DOMAIN: v = AF_NETLINK; break;
        case SO_PROTOCOL: v = s->protocol; break;
        case SO_ERROR: v = s->pending_err; s->pending_err = 0; break;
        default: return real_getsockopt(fd, level, optname, val, len);
        }
    } else if (level == SOL_NETLINK) {
        if (optname == NETLINK_LIST_MEMBERSHIPS) {
            if (len && *len >= 4 && val) memcpy(val, &s->groups, 4);
            if (len) *len = 4;
            return 0;
        }
        if (optname < 0 || optname >= 16) { errno = ENOPROTOOPT; return -1; }
        v = s->opts[optname];
    } else {
        errno = ENOPROTOOPT; return -1;
    }
    if (!val || !len || *len < sizeof(int)) { errno = EINVAL; return -1; }
    memcpy(val, &v, sizeof v);
    *len = sizeof v;
    return 0;
}

/* What the requests of a datagram will be answered with, for pool_put: a message with
 * NLM_F_ACK, or a dump request (NLM_F_DUMP), gets exactly one final NLMSG_ERROR or
 * NLMSG_DONE (netlink_rcv_skb, netlink_dump_done); anything else may or may not be
 * answered, so the connection is not reused. */
static void count_requests(struct nlsock *s, const unsigned char *b, size_t n)
{
    size_t o = 0;
    while (o + 16 <= n) {
        uint32_t len; uint16_t flags;
        memcpy(&len, b + o, 4); memcpy(&flags, b + o + 6, 2);
        if (len < 16 || len > n - o) { s->unsure = 1; return; }
        if ((flags & NLM_F_DUMP) == NLM_F_DUMP) s->dumps++;
        if ((flags & NLM_F_ACK) || (flags & NLM_F_DUMP) == NLM_F_DUMP) s->expect++;
        else s->unsure = 1;
        o += (len + 3) & ~3u;
    }
}

static void count_finals(struct nlsock *s, const unsigned char *b, size_t n)
{
    size_t o = 0;
    while (o + 16 <= n) {
        uint32_t len; uint16_t type;
        memcpy(&len, b + o, 4); memcpy(&type, b + o + 4, 2);
        if (len < 16 || len > n - o) return;
        if (type == NLMSG_ERROR || type == NLMSG_DONE) s->finals++;
        if (s->dumps > 0 && type == NLMSG_DONE) s->dumps--;
        if (s->dumps > 0 && type == NLMSG_ERROR && len >= 36) {
            /* a dump request refused; but one whose first step found no room (ENOBUFS)
             * is still running (__netlink_dump_start) */
            int32_t err; uint16_t rflags;
            memcpy(&err, b + o + 16, 4); memcpy(&rflags, b + o + 26, 2);
            if ((rflags & NLM_F_DUMP) == NLM_F_DUMP && err != -ENOBUFS) s->dumps--;
        }
        o += (len + 3) & ~3u;
    }
}

/* One datagram to the kernel. A datagram the kernel would ignore (shorter than a header or
 * starting with four zero bytes) is not forwarded, but still binds the socket. */
static ssize_t nl_send(int fd, struct nlsock *s, const struct iovec *iov, size_t iovcnt, int flags)
{
    size_t total = 0;
    for (size_t i = 0; i < iovcnt; i++) total += iov[i].iov_len;
    if (s->gone) { errno = ECONNREFUSED; return -1; }
    if (ensure_bound(fd, s) < 0) return -1;
    if (total < 16) return (ssize_t)total;
    char *buf = malloc(total);
    if (!buf) { errno = ENOMEM; return -1; }
    size_t o = 0;
    for (size_t i = 0; i < iovcnt; i++) { memcpy(buf + o, iov[i].iov_base, iov[i].iov_len); o += iov[i].iov_len; }
    uint32_t first; memcpy(&first, buf, 4);
    ssize_t r = (ssize_t)total;
    if (first != 0) {
        if (nsfd_n) {
            pthread_mutex_lock(&nsfd_lock);
            for (int i = 0; i < nsfd_n; i++) {
                char pl[4 + 64], fr[8 + 4 + 64];
                uint32_t nfd = (uint32_t)nsfds[i].fd;
                size_t nl = strlen(nsfds[i].name) + 1;
                memcpy(pl, &nfd, 4); memcpy(pl + 4, nsfds[i].name, nl);
                queue_record(s, fr, build_frame(fr, F_NETNS_FD, pl, 4 + nl));
            }
            pthread_mutex_unlock(&nsfd_lock);
        }
        uint32_t told = s->nread;
        if (told != s->nread_told) {
            char fr[16];
            size_t fl = build_frame(fr, F_READ, &told, 4);
            /* in the same record when a BATCH has room for both, else just before it */
            if (total + s->outlen + 64 <= RECORD_MAX - 2048) queue_record(s, fr, fl);
            else if (flush_with(fd, s, fr, fl, flags & MSG_DONTWAIT) < 0) told = s->nread_told;
        }
        r = flush_with(fd, s, buf, total, flags & MSG_DONTWAIT) < 0 ? -1 : (ssize_t)total;
        if (r >= 0) s->nread_told = told;
        if (r < 0 && (errno == EPIPE || errno == ECONNRESET)) server_gone(fd, &s->gone, "send");
        if (r >= 0) { s->sent++; count_requests(s, (const unsigned char *)buf, total); }
    }
    free(buf);
    return r < 0 ? -1 : (ssize_t)total;
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    load_all();
    struct nlsock *s = nl_of(fd);
    if (!s) {
        struct inetsock *is = in_of(fd);
        if (!is && msg && msg->msg_name && inet_mode()) is = inet_adopt(fd, 1);
        if (is) return in_send(fd, is, msg->msg_iov, msg->msg_iovlen, flags,
                               msg->msg_name, msg->msg_namelen);
        return scm_sendmsg(fd, msg, flags);
    }
    return nl_send(fd, s, msg->msg_iov, msg->msg_iovlen, flags);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *a, socklen_t al)
{
    load_all();
    struct nlsock *s = nl_of(fd);
    if (!s) {
        struct inetsock *is = in_of(fd);
        if (!is && a && inet_mode()) {
            if (inet_unsupported(fd)) return -1;
            is = inet_adopt(fd, 1);
        }
        if (is) {
            struct iovec iov = { (void *)buf, n };
            return in_send(fd, is, &iov, 1, flags, a, al);
        }
        return real_sendto(fd, buf, n, flags, a, al);
    }
    struct iovec iov = { (void *)buf, n };
    return nl_send(fd, s, &iov, 1, flags);
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    load_all();
    struct nlsock *s = nl_of(fd);
    if (!s) {
        struct inetsock *is = in_of(fd);
        if (!is) return real_send(fd, buf, n, flags);
        struct iovec iov = { (void *)buf, n };
        return in_send(fd, is, &iov, 1, flags, NULL, 0);
    }
    struct iovec iov = { (void *)buf, n };
    return nl_send(fd, s, &iov, 1, flags);
}

/* sysctl writes (/proc/sys), defined with the virtual files */
static ssize_t sysctl_write(int fd, ssize_t written);
static int sysctl_apply(int fd);
static void sysctl_forget(int fd);
static int sysctl_dup(int fd, int fd2);

ssize_t write(int fd, const void *buf, size_t n)
{
    load_all();
    struct nlsock *s = nl_of(fd);
    if (!s) {
        struct inetsock *is = in_of(fd);
        if (!is) return sysctl_write(fd, real_write(fd, buf, n));
        struct iovec iov = { (void *)buf, n };
        return in_send(fd, is, &iov, 1, 0, NULL, 0);
    }
    struct iovec iov = { (void *)buf, n };
    return nl_send(fd, s, &iov, 1, 0);
}

/* A control frame taken off the head of the queue: 1 if it was a SOCK_ERROR (errno set, the
 * read fails with it, as sk_err), 0 otherwise. */
static int handle_frame(struct nlsock *s, const unsigned char *hdr, ssize_t n)
{
    struct frame f;
    memcpy(&f, hdr, 8);
    if (f.kind == F_BIND_REPLY && n >= 16) {
        /* an optimistic autobind the server could not honour: the socket got another
         * port id. Replies already addressed to the predicted id are lost to filters
         * that check nlmsg_pid; say so once. */
        uint32_t pid; memcpy(&pid, hdr + 12, 4);
        if (s && s->portid != pid) {
            fprintf(stderr, "xfrmd shim: port id %u was taken, the socket got %u\n",
                    s->portid, pid);
            auto_check_pid();
            if (s->portid == (uint32_t)auto_pid) pid_ports[proto_slot(s->protocol)]--;
            s->portid = pid;
        }
        return 0;
    }
    if (f.kind == F_SYNC_REPLY && n >= 12) {
        uint32_t c; memcpy(&c, hdr + 8, 4);
        if (s) { s->synced = c; if (s->syncs > 0) s->syncs--; }
        return 0;
    }
    if (f.kind == F_SOCK_ERROR && n >= 12) {
        int32_t e; memcpy(&e, hdr + 8, 4);
        errno = -e;
        return 1;
    }
    return 0;
}

static int is_dump_part(const unsigned char *b, ssize_t n)
{
    if (n < 16) return 0;
    uint16_t type, flags;
    memcpy(&type, b + 4, 2); memcpy(&flags, b + 6, 2);
    return (flags & NLM_F_MULTI) && type != NLMSG_DONE;
}

static ssize_t nl_recv1(int fd, struct nlsock *s, struct iovec *iov, size_t iovcnt, int flags,
                        struct sockaddr *from, socklen_t *fromlen, int *msg_flags);

/* On Linux a request's answer is queued before sendmsg returns, so a non-blocking read right
 * after it finds the answer. Through the server it may still be on its way: a read that
 * would fail with EAGAIN while requests are unanswered first asks the server for a SYNC mark
 * (sent after everything the earlier requests produced) and waits for something to read. */
static ssize_t nl_recv(int fd, struct nlsock *s, struct iovec *iov, size_t iovcnt, int flags,
                       struct sockaddr *from, socklen_t *fromlen, int *msg_flags)
{
    if (s->gone) { errno = ECONNREFUSED; return -1; }
    if (s->outlen && flush_out(fd, s) < 0) { server_gone(fd, &s->gone, "recv"); return -1; }
    for (int tries = 0;; tries++) {
        ssize_t r = nl_recv1(fd, s, iov, iovcnt, flags, from, fromlen, msg_flags);
        if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK) || tries > 0 || s->sent == s->synced)
            return r;
        uint32_t c = s->sent;
        if (send_frame(fd, F_SYNC, &c, 4) < 0) { errno = EAGAIN; return -1; }
        s->syncs++;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        while (poll(&p, 1, 10000) < 0 && errno == EINTR) {}
    }
}

/* XFRMD_SPIN_US (default 150): how long a read waiting for an answer polls before it sleeps;
 * 0 when this process may run on one CPU only, where polling would only delay the server (the
 * server's own rule). The affinity is one system call; sysconf(_SC_NPROCESSORS_ONLN) opens,
 * reads and closes /sys/devices/system/cpu/online, in every process's first read. */
static long spin_ns(void)
{
    static long v = -1;
    if (v < 0) {
        const char *e = getenv("XFRMD_SPIN_US");
        cpu_set_t cpus;
        v = (e && *e) ? strtol(e, NULL, 10) * 1000L : 150000L;
        int n = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus)
                : (int)sysconf(_SC_NPROCESSORS_ONLN);        /* more than 1024 CPUs */
        if (v < 0 || n < 2) v = 0;
    }
    return v;
}

static ssize_t nl_recv1(int fd, struct nlsock *s, struct iovec *iov, size_t iovcnt, int flags,
                        struct sockaddr *from, socklen_t *fromlen, int *msg_flags)
{
    size_t want = 0;
    for (size_t i = 0; i < iovcnt; i++) want += iov[i].iov_len;
    unsigned char *buf = malloc(RECORD_MAX);
    if (!buf) { errno = ENOMEM; return -1; }
    ssize_t n;
    /* one recv per record: control frames are taken off and handled, a datagram is the
     * answer (peeked or read, as the caller asked) */
    for (;;) {
        n = -1;
        if (!(flags & MSG_DONTWAIT) && s && s->finals < s->expect && spin_ns() > 0) {
            /* an answer is due: poll for it a little before sleeping (the server does the
             * same for the next request), which spares the cross-CPU wake-up. Yielding lets
             * the server run if it shares this CPU; a poll that found nothing turns polling
             * off for the next waits (the server is busy, or on this CPU). */
            static __thread int skip;
            if (skip > 0) {
                skip--;
            } else {
                struct timespec t0, t;
                clock_gettime(CLOCK_MONOTONIC, &t0);
                for (;;) {
                    n = real_recv(fd, buf, RECORD_MAX, (flags & MSG_PEEK) | MSG_DONTWAIT);
                    if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) break;
                    clock_gettime(CLOCK_MONOTONIC, &t);
                    if ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) > spin_ns()) {
                        skip = 32;
                        break;
                    }
                    sched_yield();
                }
            }
        }
        if (n < 0) n = real_recv(fd, buf, RECORD_MAX, flags & (MSG_PEEK | MSG_DONTWAIT));
        if (n < 0 && errno != ECONNRESET) { free(buf); return -1; }
        if (n == 0 || (n < 0 && errno == ECONNRESET)) { free(buf); server_gone(fd, &s->gone, "recv"); return -1; }
        uint32_t first; memcpy(&first, buf, 4);
        if (n < 8 || first != 0) break;
        if (flags & MSG_PEEK) { char t[64]; real_recv(fd, t, sizeof t, MSG_DONTWAIT); }
        if (handle_frame(s, buf, n)) { free(buf); return -1; }
    }
    size_t copy = (size_t)n < want ? (size_t)n : want, o = 0;
    for (size_t i = 0; i < iovcnt && o < copy; i++) {
        size_t c = iov[i].iov_len < copy - o ? iov[i].iov_len : copy - o;
        memcpy(iov[i].iov_base, buf + o, c);
        o += c;
    }
    if (msg_flags) *msg_flags = ((size_t)n > want) ? MSG_TRUNC : 0;
    fill_nl(from, fromlen, 0, 0);
    if (!(flags & MSG_PEEK)) {
        if (s) s->nread++;
        count_finals(s, buf, (size_t)n);
    }
    /* netlink_recvmsg runs the next step of a running dump on every receive, a MSG_PEEK
     * too, sized by max_recvmsg_len as it stands then: `ip`'s first peek (a 0-byte buffer)
     * is why the kernel's second dump datagram is NLMSG_GOODSIZE and not 32k. Once that
     * length is at its cap (SKB_WITH_OVERHEAD(32768)) every step has the same size, and a
     * peek's step only runs ahead of the read's: the boundaries are the same without it,
     * and the server is spared a wake-up a datagram */
    if (s && (is_dump_part(buf, n) || s->dumps > 0)
            && (!(flags & MSG_PEEK) || s->recvd_max < 32768 - 320)) {
        uint32_t b = (uint32_t)(want > 32768 ? 32768 : want);
        if (b > s->recvd_max) s->recvd_max = b;
        send_frame(fd, F_RECVD, &b, 4);
    }
    free(buf);
    return (flags & MSG_TRUNC) ? n : (ssize_t)copy;
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    load_all();
    struct nlsock *s = nl_of(fd);
    struct inetsock *is = in_of(fd);
    if (is && (flags & MSG_ERRQUEUE)) return in_recv_errqueue(is, msg);
    if (is) {
        int mf = 0;
        ssize_t r = in_recv(fd, is, msg->msg_iov, msg->msg_iovlen, flags,
                            (struct sockaddr *)msg->msg_name, &msg->msg_namelen, &mf);
        msg->msg_flags = mf;
        in_cmsgs(is, msg, r);
        return r;
    }
    if (!s) return scm_recvmsg(fd, msg, flags);
    int mf = 0;
    ssize_t r = nl_recv(fd, s, msg->msg_iov, msg->msg_iovlen, flags,
                        (struct sockaddr *)msg->msg_name, &msg->msg_namelen, &mf);
    msg->msg_flags = mf;
    msg->msg_controllen = 0;
    return r;
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *from, socklen_t *fl)
{
    load_all();
    struct nlsock *s = nl_of(fd);
    struct inetsock *is = in_of(fd);
    if (is) {
        struct iovec iov = { buf, n };
        return in_recv(fd, is, &iov, 1, flags, from, fl, NULL);
    }
    if (!s) return real_recvfrom(fd, buf, n, flags, from, fl);
    struct iovec iov = { buf, n };
    return nl_recv(fd, s, &iov, 1, flags, from, fl, NULL);
}

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    load_all();
    struct nlsock *s = nl_of(fd);
    struct inetsock *is = in_of(fd);
    if (is) {
        struct iovec iov = { buf, n };
        return in_recv(fd, is, &iov, 1, flags, NULL, NULL, NULL);
    }
    if (!s) return real_recv(fd, buf, n, flags);
    struct iovec iov = { buf, n };
    return nl_recv(fd, s, &iov, 1, flags, NULL, NULL, NULL);
}

ssize_t read(int fd, void *buf, size_t n)
{
    load_all();
    struct nlsock *s = nl_of(fd);
    struct inetsock *is = in_of(fd);
    if (is) {
        struct iovec iov = { buf, n };
        return in_recv(fd, is, &iov, 1, 0, NULL, NULL, NULL);
    }
    if (!s) return real_read(fd, buf, n);
    struct iovec iov = { buf, n };
    return nl_recv(fd, s, &iov, 1, 0, NULL, NULL, NULL);
}

/* ---- fd copies: every fd of a socket points at one struct nlsock ----------------------- */
static void release(int fd)
{
    struct nlsock *s = nl_of(fd);
    if (!s) return;
    nltab[fd] = NULL;
    if (--s->refs > 0) return;
    if (s->keep_fd >= 0) {
        /* the connection was not kept (pool_put took keep_fd otherwise): the shim's copy
         * goes too, so the server sees it end; unless the program put a file of its own
         * at that number meanwhile (dup2, close_range and a new open) */
        struct stat st;
        if (fstat(s->keep_fd, &st) == 0 && S_ISSOCK(st.st_mode) && (uint64_t)st.st_ino == s->ino)
            real_close(s->keep_fd);
    }
    auto_check_pid();
    if (s->bound && s->portid == (uint32_t)auto_pid) pid_ports[proto_slot(s->protocol)]--;
    free(s->out);
    free(s);
    nl_live--;
}

/* ``nfd`` is now a copy of ``fd`` (dup and friends succeeded) */
static int share(int fd, int nfd)
{
    struct nlsock *s = nl_of(fd);
    struct inetsock *is = in_of(fd);
    if (nfd < 0 || nfd >= MAXFD || nfd == fd) return nfd;
    release(nfd);
    in_release(nfd);
    if (s) { s->refs++; nltab[nfd] = s; }
    if (is) { is->refs++; intab[nfd] = is; }
    return nfd;
}

int close(int fd)
{
    load_all();
    nsfd_forget(fd);
    struct nlsock *s = nl_of(fd);
    if (s && s->refs == 1) {
        s->outlen = 0; s->outn = 0;          /* never sent: the server need not hear of it */
        pool_put(fd, s);
    }
    if (s || in_of(fd)) {
        /* a socket is no sysctl memfd: no fstat to find out (one per `ip -batch` line) */
        release(fd);
        in_release(fd);
        sysctl_forget(fd);
        return real_close(fd);
    }
    int bad = sysctl_apply(fd) < 0, e = errno;
    sysctl_forget(fd);
    int r = real_close(fd);
    if (bad) { errno = e; return -1; }     /* closed all the same, as close() on Linux */
    return r;
}

REAL(int, dup, (int));
REAL(int, dup2, (int, int));
REAL(int, dup3, (int, int, int));
REAL(int, fcntl64, (int, int, ...));

int dup(int fd)
{
    if (!real_dup) real_dup = dlsym(RTLD_NEXT, "dup");
    return share(fd, sysctl_dup(fd, real_dup(fd)));
}

int dup2(int fd, int fd2)
{
    if (!real_dup2) real_dup2 = dlsym(RTLD_NEXT, "dup2");
    if (fd != fd2) { sysctl_apply(fd2); sysctl_forget(fd2); }   /* the old fd2 closes */
    return share(fd, sysctl_dup(fd, real_dup2(fd, fd2)));
}

int dup3(int fd, int fd2, int flags)
{
    if (!real_dup3) real_dup3 = dlsym(RTLD_NEXT, "dup3");
    if (fd != fd2) { sysctl_apply(fd2); sysctl_forget(fd2); }
    return share(fd, sysctl_dup(fd, real_dup3(fd, fd2, flags)));
}

/* fcntl's third argument is an int or a pointer, or absent: passed on as the word it is,
 * as glibc's own wrappers do */
static int fcntl_via(int (*real)(int, int, ...), int fd, int cmd, void *arg)
{
    int r = real(fd, cmd, arg);
    struct nlsock *s = nl_of(fd);
    if (s && cmd == F_SETFL && r == 0) s->nb = ((long)arg & O_NONBLOCK) != 0;
    return (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) ? share(fd, sysctl_dup(fd, r)) : r;
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (!real_fcntl) real_fcntl = dlsym(RTLD_NEXT, "fcntl");
    return fcntl_via(real_fcntl, fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (!real_fcntl64) real_fcntl64 = dlsym(RTLD_NEXT, "fcntl64");
    if (!real_fcntl64) real_fcntl64 = dlsym(RTLD_NEXT, "fcntl");
    return fcntl_via(real_fcntl64, fd, cmd, arg);
}

static void before_fork(void)
{
    if (nl_live <= 0) return;
    auto_off = 1;
    fork_gen++;
    /* parent and child must not both send what is deferred */
    for (int fd = 0; fd <= max_nlfd && fd < MAXFD; fd++)
        if (nltab[fd] && nltab[fd]->outlen) flush_out(fd, nltab[fd]);
}

__attribute__((constructor)) static void shim_atfork(void)
{
    pthread_atfork(before_fork, NULL, child_pid_reset);
}

/* ---- exec: what is deferred must reach the server first (the image that follows has no
 * memory of it); glibc's exec functions call the system call directly, so each is wrapped */
static void flush_all(void)
{
    for (int fd = 0; fd <= max_nlfd && fd < MAXFD; fd++)
        if (nltab[fd] && nltab[fd]->outlen) flush_out(fd, nltab[fd]);
}

static char **vcwd_env(char *const e[]);

#define EXEC_WRAP(name, params, args) \
    int name params { \
        static int (*real) params; \
        if (!real) real = dlsym(RTLD_NEXT, #name); \
        flush_all(); \
        return real args; \
    }
EXEC_WRAP(execve, (const char *p, char *const a[], char *const e[]), (p, a, vcwd_env(e)))
EXEC_WRAP(execv, (const char *p, char *const a[]), (p, a))
EXEC_WRAP(execvp, (const char *p, char *const a[]), (p, a))
EXEC_WRAP(execvpe, (const char *p, char *const a[], char *const e[]), (p, a, vcwd_env(e)))
EXEC_WRAP(fexecve, (int fd, char *const a[], char *const e[]), (fd, a, vcwd_env(e)))

/* execl, execlp, execle: the arguments gathered, then the v form (wrapped above) */
static char **gather(const char *arg0, va_list ap, char *const **envp)
{
    size_t n = 1, cap = 16;
    char **v = malloc(cap * sizeof *v);
    if (!v) return NULL;
    v[0] = (char *)arg0;
    for (char *a = arg0 ? va_arg(ap, char *) : NULL;; a = va_arg(ap, char *)) {
        if (n + 1 >= cap) { cap *= 2; char **w = realloc(v, cap * sizeof *v); if (!w) { free(v); return NULL; } v = w; }
        v[n++] = a;
        if (!a) break;
    }
    if (!arg0) v[0] = NULL;
    if (envp) *envp = va_arg(ap, char *const *);
    return v;
}

int execl(const char *path, const char *arg0, ...)
{
    va_list ap; va_start(ap, arg0);
    char **v = gather(arg0, ap, NULL);
    va_end(ap);
    if (!v) { errno = ENOMEM; return -1; }
    int r = execv(path, v);
    free(v);
    return r;
}

int execlp(const char *file, const char *arg0, ...)
{
    va_list ap; va_start(ap, arg0);
    char **v = gather(arg0, ap, NULL);
    va_end(ap);
    if (!v) { errno = ENOMEM; return -1; }
    int r = execvp(file, v);
    free(v);
    return r;
}

int execle(const char *path, const char *arg0, ...)
{
    va_list ap; va_start(ap, arg0);
    char *const *env = NULL;
    char **v = gather(arg0, ap, &env);
    va_end(ap);
    if (!v) { errno = ENOMEM; return -1; }
    int r = execve(path, v, env);
    free(v);
    return r;
}

/* ---- netlink fds inherited across exec ---------------------------------------------------
 * A netlink fd without FD_CLOEXEC survives exec, but the shim's table of it does not. At
 * start-up, every fd that is a SEQPACKET connection to the server is looked up by the inode
 * of our end (sent in its HELLO); the server answers what the socket is (nlsock_state). */
static int service_query(const char *json, char *out, size_t outlen);

static void adopt(int fd, uint64_t ino)
{
    char q[128], a[1024];
    snprintf(q, sizeof q, "{\"op\":\"nlsock_state\",\"ino\":%llu}", (unsigned long long)ino);
    if (service_query(q, a, sizeof a) < 0 || json_int(a, "errno", 1) != 0) return;
    struct nlsock *s = nlsock_new();
    if (!s) return;
    s->protocol = (int)json_int(a, "protocol", 0);
    s->type = (int)json_int(a, "type", SOCK_RAW);
    s->bound = (int)json_int(a, "bound", 0);
    s->portid = (uint32_t)json_int(a, "portid", 0);
    s->groups = (uint32_t)json_int(a, "groups", 0);
    s->opts[NETLINK_EXT_ACK] = (int)json_int(a, "ext_ack", 0);
    s->opts[NETLINK_CAP_ACK] = (int)json_int(a, "cap_ack", 0);
    s->opts[NETLINK_GET_STRICT_CHK] = (int)json_int(a, "strict_chk", 0);
    s->opts[NETLINK_NO_ENOBUFS] = (int)json_int(a, "no_enobufs", 0);
    s->rcvbuf = (int)json_int(a, "rcvbuf", 212992);
    s->sndbuf = 212992;
    s->refs = 1;
    s->announced = 1;
    s->unsure = 1;           /* what the old image sent and read is unknown: never reused */
    s->gen = fork_gen;
    s->ino = ino;
    nl_register(fd, s);
    auto_check_pid();
    if (s->bound && s->portid == (uint32_t)auto_pid) pid_ports[proto_slot(s->protocol)]++;
}

/* 1 if ``fd`` is a SEQPACKET connection to the server; ``ino``: the inode of our end */
static int server_conn_ino(int fd, uint64_t *ino)
{
    char pb[256];
    const char *path = server_path(pb, sizeof pb);
    int type = 0;
    struct stat st;
    socklen_t tl = sizeof type;
    struct sockaddr_un peer;
    socklen_t pl = sizeof peer;
    if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) return 0;
    if (real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_SEQPACKET) return 0;
    if (real_getpeername(fd, (struct sockaddr *)&peer, &pl) < 0 || peer.sun_family != AF_UNIX) return 0;
    if (pl <= offsetof(struct sockaddr_un, sun_path) ||
        strncmp(peer.sun_path, path, sizeof peer.sun_path) != 0) return 0;
    *ino = (uint64_t)st.st_ino;
    return 1;
}

__attribute__((constructor)) static void shim_adopt_inherited(void)
{
    load_all();
    int dfd = real_open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return;
    int fds[64], n = 0;
    char buf[4096];
    long got;
    while (n < 64 && (got = syscall(SYS_getdents64, dfd, buf, sizeof buf)) > 0) {
        for (long o = 0; o < got && n < 64;) {
            unsigned short reclen; memcpy(&reclen, buf + o + 16, 2);
            const char *name = buf + o + 19;
            if (name[0] >= '0' && name[0] <= '9') {
                int fd = atoi(name);
                if (fd != dfd && fd > 2 && fd < MAXFD) fds[n++] = fd;
            }
            o += reclen;
        }
    }
    real_close(dfd);
    for (int i = 0; i < n; i++) {
        uint64_t ino;
        if (!nltab[fds[i]] && server_conn_ino(fds[i], &ino)) adopt(fds[i], ino);
    }
}

/* ---- netlink fds passed to another process (SCM_RIGHTS) --------------------------------
 * The fd that arrives is the same open file, so the same connection, so the same emulated
 * socket, as on Linux (scm_fp_dup: the file is shared, not copied). The sender sends what it
 * deferred first (HELLO above all: the receiver asks the server what the socket is), and
 * never reuses the connection after its close() (another process holds the socket, as after
 * fork). The receiver learns the socket's state as a program does after exec (adopt). */
static void scm_passed(int fd)
{
    struct nlsock *s = nl_of(fd);
    if (!s) return;
    flush_out(fd, s);
    s->unsure = 1;           /* never to the pool: the other process may still use it */
    auto_off = 1;            /* a close() no longer frees the port id */
}

static void scm_rights_each(const struct msghdr *msg, void (*fn)(int))
{
    if (!msg || !msg->msg_control || msg->msg_controllen < sizeof(struct cmsghdr)) return;
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c;
         c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            fn(fd);
        }
    }
}

static void scm_received(int fd)
{
    uint64_t ino;
    if (fd < 0 || fd >= MAXFD) return;
    release(fd);             /* the number was free: what the table says of it is stale */
    in_release(fd);
    if (!server_conn_ino(fd, &ino)) return;
    /* passed to itself: one socket with two fds, as after dup() */
    for (int i = 0; i <= max_nlfd && i < MAXFD; i++)
        if (nltab[i] && nltab[i]->ino == ino) {
            share(i, fd);
            if (fd > max_nlfd) max_nlfd = fd;
            return;
        }
    adopt(fd, ino);
}

static ssize_t scm_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    if (nl_live > 0) scm_rights_each(msg, scm_passed);
    return real_sendmsg(fd, msg, flags);
}

static ssize_t scm_recvmsg(int fd, struct msghdr *msg, int flags)
{
    ssize_t r = real_recvmsg(fd, msg, flags);
    if (r >= 0 && msg && msg->msg_controllen) {
        int e = errno;
        scm_rights_each(msg, scm_received);
        errno = e;
    }
    return r;
}

/* ---- interface lookups ----------------------------------------------------------------- */
unsigned int if_nametoindex(const char *name)
{
    load_all();
    char q[128], a[512];
    if (!name || strlen(name) >= IF_NAMESIZE) { errno = ENODEV; return 0; }
    snprintf(q, sizeof q, "{\"op\":\"if_nametoindex\",\"name\":\"%s\"}", name);
    if (service_query_link(q, a, sizeof a) < 0) return 0;
    long idx = json_int(a, "index", 0);
    if (!idx) errno = ENODEV;
    return (unsigned)idx;
}

char *if_indextoname(unsigned int index, char name[IF_NAMESIZE])
{
    load_all();
    char q[128], a[512];
    snprintf(q, sizeof q, "{\"op\":\"if_indextoname\",\"index\":%u}", index);
    if (service_query(q, a, sizeof a) < 0) return NULL;
    if (json_int(a, "errno", 0) || json_str(a, "name", name, IF_NAMESIZE) < 0) { errno = ENXIO; return NULL; }
    return name;
}

struct if_nameindex *if_nameindex(void)
{
    load_all();
    char *a = malloc(RECORD_MAX);
    if (!a) return NULL;
    if (service_query("{\"op\":\"if_nameindex\"}", a, RECORD_MAX) < 0) { free(a); return NULL; }
    const char *p = json_find(a, "links");
    size_t cap = 8, n = 0;
    struct if_nameindex *out = calloc(cap + 1, sizeof *out);
    while (p && out && (p = strchr(p, '[')) != NULL) {
        p++;
        if (*p == '[') continue;           /* the outer list */
        unsigned idx = (unsigned)strtoul(p, (char **)&p, 10);
        while (*p == ',' || *p == ' ') p++;
        char nm[IF_NAMESIZE];
        p = json_str_at(p, nm, sizeof nm);
        if (n == cap) { cap *= 2; out = realloc(out, (cap + 1) * sizeof *out); }
        out[n].if_index = idx; out[n].if_name = strdup(nm); n++;
    }
    if (out) { out[n].if_index = 0; out[n].if_name = NULL; }
    free(a);
    return out;
}

void if_freenameindex(struct if_nameindex *p)
{
    if (!p) return;
    for (struct if_nameindex *q = p; q->if_name; q++) free(q->if_name);
    free(p);
}

/* getifaddrs: one entry per address (and one AF_PACKET-less entry per link without one). */
int getifaddrs(struct ifaddrs **ifap)
{
    load_all();
    char *a = malloc(RECORD_MAX);
    if (!a) { errno = ENOMEM; return -1; }
    if (service_query("{\"op\":\"getifaddrs\"}", a, RECORD_MAX) < 0) { free(a); return -1; }
    struct ifaddrs *head = NULL, **tail = &head;
    const char *p = json_find(a, "ifaddrs");
    while (p && (p = strchr(p, '{')) != NULL) {
        const char *end = strchr(p, '}');
        if (!end) break;
        char obj[1024];
        size_t len = (size_t)(end - p + 1) < sizeof obj - 1 ? (size_t)(end - p + 1) : sizeof obj - 1;
        memcpy(obj, p, len); obj[len] = 0;
        p = end + 1;
        struct ifaddrs *e = calloc(1, sizeof *e);
        char name[IF_NAMESIZE] = "", addr[64] = "";
        json_str(obj, "name", name, sizeof name);
        e->ifa_name = strdup(name);
        e->ifa_flags = (unsigned)json_int(obj, "flags", 0);
        long fam = json_int(obj, "family", 0);
        long plen = json_int(obj, "prefixlen", 0);
        if (json_str(obj, "addr", addr, sizeof addr) == 0 && (fam == AF_INET || fam == AF_INET6)) {
            if (fam == AF_INET) {
                struct sockaddr_in *sa = calloc(1, sizeof *sa), *nm = calloc(1, sizeof *nm);
                sa->sin_family = AF_INET; inet_pton(AF_INET, addr, &sa->sin_addr);
                nm->sin_family = AF_INET;
                nm->sin_addr.s_addr = plen ? htonl(0xFFFFFFFFu << (32 - plen)) : 0;
                e->ifa_addr = (void *)sa; e->ifa_netmask = (void *)nm;
            } else {
                struct sockaddr_in6 *sa = calloc(1, sizeof *sa), *nm = calloc(1, sizeof *nm);
                sa->sin6_family = AF_INET6; inet_pton(AF_INET6, addr, &sa->sin6_addr);
                sa->sin6_scope_id = (uint32_t)json_int(obj, "index", 0);
                nm->sin6_family = AF_INET6;
                for (long i = 0; i < plen && i < 128; i++) nm->sin6_addr.s6_addr[i / 8] |= 0x80 >> (i % 8);
                e->ifa_addr = (void *)sa; e->ifa_netmask = (void *)nm;
            }
        }
        *tail = e; tail = &e->ifa_next;
    }
    free(a);
    *ifap = head;
    return 0;
}

void freeifaddrs(struct ifaddrs *ifa)
{
    while (ifa) {
        struct ifaddrs *n = ifa->ifa_next;
        free(ifa->ifa_name); free(ifa->ifa_addr); free(ifa->ifa_netmask);
        free(ifa);
        ifa = n;
    }
}

/* ---- interface ioctls -------------------------------------------------------------------- */
static size_t ethtool_len(const void *data)
{
    uint32_t cmd; memcpy(&cmd, data, 4);
    switch (cmd) {
    case ETHTOOL_GDRVINFO: return sizeof(struct ethtool_drvinfo);
    case ETHTOOL_GSSET_INFO: {
        struct ethtool_sset_info si; memcpy(&si, data, sizeof si);
        return sizeof si + 4 * (size_t)__builtin_popcountll(si.sset_mask);
    }
    case ETHTOOL_GSTRINGS: {
        struct ethtool_gstrings gs; memcpy(&gs, data, sizeof gs);
        return sizeof gs + (size_t)gs.len * ETH_GSTRING_LEN;
    }
    case ETHTOOL_GFEATURES: {
        struct ethtool_gfeatures gf; memcpy(&gf, data, sizeof gf);
        return sizeof gf + (size_t)gf.size * sizeof(struct ethtool_get_features_block);
    }
    case ETHTOOL_SFEATURES: {
        struct ethtool_sfeatures sf; memcpy(&sf, data, sizeof sf);
        return sizeof sf + (size_t)sf.size * sizeof(struct ethtool_set_features_block);
    }
    default: return sizeof(struct ethtool_value);
    }
}

static int is_if_ioctl(unsigned long req)
{
    return req == SIOCGIFNAME || req == SIOCGIFINDEX || req == SIOCGIFFLAGS ||
           req == SIOCSIFFLAGS || req == SIOCGIFHWADDR || req == SIOCGIFMTU ||
           req == SIOCGIFADDR || req == SIOCETHTOOL || req == SIOCGIFCONF ||
           req == SIOCGIFNETMASK || req == SIOCGIFBRDADDR || req == SIOCGIFDSTADDR ||
           req == SIOCGIFTXQLEN || req == SIOCGIFMETRIC || req == SIOCGIFMAP;
}

static int do_ifconf(struct ifconf *ifc)
{
    struct ifaddrs *ifa, *e;
    if (getifaddrs(&ifa) < 0) return -1;
    int used = 0, cap = ifc->ifc_len;
    for (e = ifa; e; e = e->ifa_next) {
        if (!e->ifa_addr || e->ifa_addr->sa_family != AF_INET) continue;
        if (ifc->ifc_req && used + (int)sizeof(struct ifreq) <= cap) {
            struct ifreq *r = (struct ifreq *)((char *)ifc->ifc_req + used);
            memset(r, 0, sizeof *r);
            strncpy(r->ifr_name, e->ifa_name, IF_NAMESIZE - 1);
            memcpy(&r->ifr_addr, e->ifa_addr, sizeof(struct sockaddr_in));
        }
        used += sizeof(struct ifreq);
    }
    freeifaddrs(ifa);
    if (ifc->ifc_req && used > cap) used = cap - cap % (int)sizeof(struct ifreq);
    ifc->ifc_len = used;
    return 0;
}

int ioctl(int fd, unsigned long req, ...)
{
    load_all();
    va_list ap; va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if ((req == FIONREAD || req == SIOCINQ) && arg && in_of(fd)) {
        *(int *)arg = in_pending(fd);
        return 0;
    }
    if (req == FIONBIO && arg && nl_of(fd)) {
        int r = real_ioctl(fd, req, arg);
        if (r == 0) nl_of(fd)->nb = *(int *)arg != 0;
        return r;
    }
    if (!is_if_ioctl(req) || !arg) return real_ioctl(fd, req, arg);
    if (req == SIOCGIFCONF) return do_ifconf(arg);
    struct ifreq *ifr = arg;
    unsigned char *data = (unsigned char *)ifr;
    size_t len = sizeof *ifr;
    if (req == SIOCETHTOOL) { data = (unsigned char *)ifr->ifr_data; len = ethtool_len(data); }
    if (len > 60000) { errno = EINVAL; return -1; }
    size_t qn = len * 2 + 256;
    char *q = malloc(qn), *a = malloc(RECORD_MAX);
    if (!q || !a) { free(q); free(a); errno = ENOMEM; return -1; }
    char name[IF_NAMESIZE + 1] = "";
    memcpy(name, ifr->ifr_name, IF_NAMESIZE); name[IF_NAMESIZE] = 0;
    for (char *c = name; *c; c++) if (*c == '"' || *c == '\\') *c = '_';
    int o = snprintf(q, qn, "{\"op\":\"ioctl\",\"request\":%lu,\"ifname\":\"%s\",\"data\":\"", req, name);
    for (size_t i = 0; i < len; i++) o += snprintf(q + o, qn - o, "%02x", data[i]);
    snprintf(q + o, qn - o, "\"}");
    /* ETHTOOL_GFEATURES answers only the device's feature masks: kept (charon asks it for
     * every SA) */
    uint32_t cmd = 0;
    if (req == SIOCETHTOOL && len >= 4) memcpy(&cmd, data, 4);
    int gf = req == SIOCETHTOOL && cmd == ETHTOOL_GFEATURES;
    int rc = gf ? service_query_link(q, a, RECORD_MAX) : service_query(q, a, RECORD_MAX);
    free(q);
    if (rc < 0) { free(a); return -1; }
    long e = json_int(a, "errno", 0);
    if (e) { free(a); errno = (int)e; return -1; }
    const char *p = json_find(a, "data");
    size_t out_len = len;
    if (req == SIOCETHTOOL) {
        /* the kernel writes what the command returns (GSTRINGS: the whole string set,
         * whatever len the caller passed), trusting the caller sized its buffer */
        const char *q = p && *p == '"' ? strchr(p + 1, '"') : NULL;
        if (q) out_len = (size_t)(q - p - 1) / 2;
        if (out_len > 65536) out_len = 65536;
    }
    if (p && *p == '"') hex_decode(p + 1, data, out_len);
    free(a);
    return 0;
}

/* ---- virtual files ------------------------------------------------------------------------ */
/* ``prefix`` itself, or anything below it */
static int under(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    return !strncmp(path, prefix, n) && (path[n] == 0 || path[n] == '/');
}

static int is_virtual_tree(const char *path);

/* absolute ``path`` with "." and ".." taken lexically into ``norm``; 0 if too long */
static int lexnorm(const char *path, char *norm, size_t size)
{
    size_t o = 0;
    for (const char *p = path; *p;) {
        while (*p == '/') p++;
        const char *e = strchrnul(p, '/');
        size_t n = (size_t)(e - p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            while (o > 0 && norm[--o] != '/') ;
        } else if (n && !(n == 1 && *p == '.')) {
            if (o + n + 2 >= size) return 0;
            norm[o++] = '/';
            memcpy(norm + o, p, n);
            o += n;
        }
        p = e;
    }
    if (!o) norm[o++] = '/';
    norm[o] = 0;
    return 1;
}

/* A path with ``..`` in it is virtual when, taken lexically, it stays in the virtual tree
 * (/sys/devices/virtual/net/.. is the host's /sys/devices/virtual); the server then
 * resolves it through the links it crosses (/sys/class/net/DEV/.. is
 * /sys/devices/virtual/net). */
static int is_virtual(const char *path)
{
    if (!path || !strstr(path, "/..")) return is_virtual_tree(path);
    char norm[1024];
    return lexnorm(path, norm, sizeof norm) && is_virtual_tree(norm);
}

/* ---- a virtual working directory: `cd /sys/class/net/DEV; cat mtu` ---------------------
 * The kernel cannot hold a virtual directory as a cwd: chdir() into one records its path
 * (links resolved, as the kernel's d_path of the cwd would be) in ``vcwd`` and moves the
 * real cwd to "/"; every wrapper below takes a relative path against ``vcwd`` (VPATH), and
 * getcwd() answers it. Exec passes it on in XFRMD_VCWD (the image that follows reads it at
 * load while its real cwd is still "/"). A chdir() elsewhere ends it. */
static char vcwd[PATH_MAX];

__attribute__((constructor)) static void vcwd_init(void)
{
    static char *(*real_getcwd)(char *, size_t);
    const char *e = getenv("XFRMD_VCWD");
    char here[8];
    if (!e || e[0] != '/' || strlen(e) >= sizeof vcwd) return;
    if (!real_getcwd) real_getcwd = dlsym(RTLD_NEXT, "getcwd");
    if (real_getcwd && real_getcwd(here, sizeof here) && !strcmp(here, "/"))
        snprintf(vcwd, sizeof vcwd, "%s", e);
}

/* ``path`` as the process means it: relative ones against the virtual cwd, into ``buf``
 * (PATH_MAX) — the server resolves a virtual result, others are taken lexically (the real
 * cwd is "/", not the directory the path is relative to) */
static const char *vpath(int dirfd, const char *path, char *buf)
{
    if (!vcwd[0] || !path || !path[0] || path[0] == '/' || dirfd != AT_FDCWD) return path;
    char joined[PATH_MAX];
    if (snprintf(joined, sizeof joined, "%s/%s", vcwd, path) >= (int)sizeof joined) return path;
    if (is_virtual(joined)) { memcpy(buf, joined, strlen(joined) + 1); return buf; }
    return lexnorm(joined, buf, PATH_MAX) ? buf : path;
}
#define VPATH_AT(dirfd, path) char vbuf_[PATH_MAX]; path = vpath(dirfd, path, vbuf_)
#define VPATH(path) VPATH_AT(AT_FDCWD, path)

static int is_virtual_tree(const char *path)
{
    return path && (!strcmp(path, "/proc/net/if_inet6") || !strcmp(path, "/proc/net/xfrm_stat") ||
                    !strcmp(path, "/proc/net/dev") || !strcmp(path, "/proc/self/net/dev") ||
                    !strcmp(path, "/proc/sys/net/ipv4/fib_multipath_hash_policy") ||
                    !strcmp(path, "/proc/sys/net/ipv4/ping_group_range") ||
                    under(path, "/proc/sys/net/ipv4/conf") || under(path, "/proc/sys/net/ipv6/conf") ||
                    under(path, "/sys/class/net") || under(path, "/proc/net/bonding") ||
                    /* the network devices' real directories (xfrmd/rtnl/sysfs_class.py) */
                    under(path, "/sys/devices/virtual/net") ||
                    !strncmp(path, "/sys/devices/netdevsim", 22) ||
                    under(path, "/sys/bus/netdevsim") || under(path, "/sys/kernel/debug/netdevsim"));
}

static void json_escape(const char *s, size_t n, char *out, size_t on)
{
    size_t o = 0;
    if (!on) return;
    for (size_t i = 0; i < n && o + 7 < on; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { out[o++] = '\\'; out[o++] = (char)c; }
        else if (c < 0x20) o += (size_t)snprintf(out + o, on - o, "\\u%04x", c);
        else out[o++] = (char)c;
    }
    out[o] = 0;
}

/* ---- sysctl writes (/proc/sys): Linux applies each write() at once and fails it with the
 * handler's errno (proc_sys_call_handler -> proc_dointvec_minmax, ipv4_ping_group_range,
 * addrconf_sysctl_mtu: EINVAL, the value unchanged); open() of a file without a write bit
 * fails with EACCES (proc_sys_permission, root included). The fd is a memfd named after the
 * file; what was written since the last apply is sent as service op write_file when the
 * program writes through the PLT (write), flushes a FILE (fclose), closes the fd or dup2s
 * over it — so `sysctl -w` sees the errno from fclose() and exits 1 as on Linux. A process
 * that inherited the fd across exec finds it by the memfd's name. */
#define SYSCTL_MEMFD "xfrmd-sysctl:"
#define VFILE_MEMFD "xfrmd-vfile:"
#define SYSCTL_FDS 1024
static unsigned char sysctl_fds[SYSCTL_FDS / 8];   /* fds this process opened (write's check) */

static int sysctl_open(const char *path, const char *esc, int flags)
{
    char q[1024], a[512], name[300];
    snprintf(q, sizeof q, "{\"op\":\"stat_file\",\"path\":\"%s\"}", esc);
    if (service_query(q, a, sizeof a) < 0) return -1;
    long e = json_int(a, "errno", 0);
    if (e) { errno = (int)e; return -1; }
    if (json_int(a, "dir", 0)) { errno = EISDIR; return -1; }     /* do_open: may_open */
    if (!(json_int(a, "mode", 0) & 0200)) { errno = EACCES; return -1; }
    snprintf(name, sizeof name, SYSCTL_MEMFD "%s", path);
    int fd = memfd_create(name, (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
    if (fd >= 0 && fd < SYSCTL_FDS) sysctl_fds[fd / 8] |= (unsigned char)(1 << (fd % 8));
    return fd;
}

/* the libc fstat, without the virtual files' answer (see vfile_fstat) */
static int raw_fstat(int fd, struct stat *st)
{
    static int (*real)(int, struct stat *);
    if (!real) real = dlsym(RTLD_NEXT, "fstat");
    return real(fd, st);
}

/* the /proc/sys path a sysctl memfd stands for, or 0 (not one) */
static int sysctl_fd_path(int fd, char *path, size_t n)
{
    struct stat st;
    char link[64], target[400];
    if (raw_fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 0) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t l = readlink(link, target, sizeof target - 1);
    if (l <= 0) return 0;
    target[l] = 0;
    const char *pre = "/memfd:" SYSCTL_MEMFD;
    if (strncmp(target, pre, strlen(pre))) return 0;
    char *d = strstr(target, " (deleted)");
    if (d) *d = 0;
    snprintf(path, n, "%s", target + strlen(pre));
    return 1;
}

/* Apply what was written to sysctl memfd ``fd`` since the last apply: 0, or -1 with the
 * handler's errno (the text is dropped either way, as Linux consumes a failed write). */
static int sysctl_apply(int fd)
{
    char path[400];
    if (!sysctl_fd_path(fd, path, sizeof path)) return 0;
    char data[1024], esc[2200], pesc[900], q[3300], a[256];
    ssize_t n = pread(fd, data, sizeof data - 1, 0);
    if (n <= 0) return 0;
    if (ftruncate(fd, 0) == 0) lseek(fd, 0, SEEK_SET);
    json_escape(data, (size_t)n, esc, sizeof esc);
    json_escape(path, strlen(path), pesc, sizeof pesc);
    snprintf(q, sizeof q, "{\"op\":\"write_file\",\"path\":\"%s\",\"data\":\"%s\"}", pesc, esc);
    if (service_query(q, a, sizeof a) < 0) return -1;
    long e = json_int(a, "errno", 0);
    if (e) { errno = (int)e; return -1; }
    return 0;
}

/* write(): a sysctl fd this process opened is applied at once (one write, one handler call) */
static ssize_t sysctl_write(int fd, ssize_t written)
{
    if (written <= 0 || fd < 0 || fd >= SYSCTL_FDS || !(sysctl_fds[fd / 8] & (1 << (fd % 8))))
        return written;
    return sysctl_apply(fd) < 0 ? -1 : written;
}

static void sysctl_forget(int fd)
{
    if (fd >= 0 && fd < SYSCTL_FDS) sysctl_fds[fd / 8] &= (unsigned char)~(1 << (fd % 8));
}

/* a copy of a sysctl fd (a shell's `echo 1400 > FILE` dup2s it onto 1) applies its writes
 * at once too; returns ``fd2`` */
static int sysctl_dup(int fd, int fd2)
{
    if (fd >= 0 && fd < SYSCTL_FDS && fd2 >= 0 && fd2 < SYSCTL_FDS &&
        (sysctl_fds[fd / 8] & (1 << (fd % 8))))
        sysctl_fds[fd2 / 8] |= (unsigned char)(1 << (fd2 % 8));
    return fd2;
}

/* A readable fd holding the file's text, or a writable one whose content goes to the
 * server on close. */
static int virtual_open(const char *path, int flags)
{
    char q[1024], esc[900];
    json_escape(path, strlen(path), esc, sizeof esc);
    /* sysfs attributes too apply each write() at once (kernfs_fop_write_iter ->
     * sysfs_kf_write -> the attribute's store) and fail it with the store's errno; a file
     * without a store refuses the open with EACCES (kernfs_fop_open) */
    if ((flags & O_ACCMODE) != O_RDONLY && (under(path, "/proc/sys") || under(path, "/sys/class/net")))
        return sysctl_open(path, esc, flags);
    if ((flags & O_ACCMODE) != O_RDONLY) {
        /* a FILE_WRITE connection: what is written goes to the server, which applies it
         * when the last reference closes (close, dup2 over it, or exit) */
        int wfd = server_connect_x(FILE_WRITE_PROTOCOL, 0, (flags & O_CLOEXEC) ? SOCK_CLOEXEC : 0, path);
        if (wfd < 0) complain("open");
        return wfd;
    }
    /* named after the path, so that fstat() can answer what stat() does (vfile_fd_path) */
    char mname[300];
    snprintf(mname, sizeof mname, VFILE_MEMFD "%s", path);
    int fd = memfd_create(mname, (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
    if (fd < 0) return -1;
    char *a = malloc(RECORD_MAX), *text = malloc(RECORD_MAX);
    snprintf(q, sizeof q, "{\"op\":\"read_file\",\"path\":\"%s\"}", esc);
    if (!a || !text || service_query(q, a, RECORD_MAX) < 0) { free(a); free(text); real_close(fd); return -1; }
    long e = json_int(a, "errno", 0);
    /* a virtual directory cannot be an fd: the kernel holds no inode for it, and a stand-in
     * directory would answer openat/fstatat/getdents relative to it with the wrong tree
     * (docs/protocol.md): EOPNOTSUPP rather than a silent empty listing */
    if (e == EISDIR) e = EOPNOTSUPP;
    if (e) { free(a); free(text); real_close(fd); errno = (int)e; return -1; }
    text[0] = 0;
    const char *p = json_find(a, "data");
    if (p) json_str_at(p, text, RECORD_MAX);
    real_write(fd, text, strlen(text));
    lseek(fd, 0, SEEK_SET);
    free(a); free(text);
    return fd;
}

/* ---- `ip link set DEV netns NAME`: ip opens /var/run/netns/NAME and sends the fd
 * (IFLA_NET_NS_FD). For an emulated namespace the shim hands out a placeholder fd and, with
 * every datagram while it is open, tells the server which namespace that fd number is
 * (F_NETNS_FD). Names the server does not know are real namespaces: opened as usual. */
/* a memfd standing for emulated namespace ``name`` (see F_NETNS_FD) */
static int nsfd_placeholder(const char *name, int flags)
{
    pthread_mutex_lock(&nsfd_lock);
    if (nsfd_n >= NSFDS) { pthread_mutex_unlock(&nsfd_lock); errno = EMFILE; return -1; }
    int fd = memfd_create("xfrmd-netns", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
    if (fd >= 0) {
        nsfds[nsfd_n].fd = fd;
        snprintf(nsfds[nsfd_n].name, sizeof nsfds[nsfd_n].name, "%s", name);
        nsfd_n++;
    }
    pthread_mutex_unlock(&nsfd_lock);
    return fd;
}

static int proc_ns_net_pid(const char *path);
static int pid_netns_name(int pid, char *out, size_t n);

/* A namespace name the server does not know: with XFRMD_HOST_NETNS=refuse (what `xfrmd run`
 * sets) a name that exists only on the host is refused with ENOENT, as entering it would
 * leave netlink in the emulated namespace while the rest of the program moved (the shim's
 * setns() answers netlink from the emulated namespace named by $XFRMD_NETNS). Unset or any
 * other value (the IKE harness: `ip netns exec REAL charon`): -2, the real file is opened.
 * ENOENT is what open() of /run/netns/NAME gives on Linux when no namespace has that name,
 * so `ip netns exec` prints its usual "Cannot open network namespace" line after ours. */
static int host_netns_refused(const char *path, const char *name)
{
    const char *mode = getenv("XFRMD_HOST_NETNS");
    if (!mode || strcmp(mode, "refuse")) return 0;
    struct stat st;
    if (stat(path, &st) == 0)
        fprintf(stderr, "xfrmd shim: network namespace \"%s\" exists only on the host, not in "
                "the emulated kernel: refused (XFRMD_HOST_NETNS=refuse; docs/protocol.md)\n", name);
    return 1;
}

static int host_netns_open(const char *path, const char *name)
{
    if (!host_netns_refused(path, name)) return -2;
    errno = ENOENT;
    return -1;
}

static int netns_open(const char *path, int flags)
{
    const char *name = NULL;
    if (!path) return -2;
    int pid = proc_ns_net_pid(path);
    if (pid) {
        /* a process's namespace: a placeholder for the emulated one it is in (a program
         * keeps its own to come back with setns(), passes it as IFLA_NET_NS_FD, or fstat()s
         * it: `ip netns identify`) */
        char cur[64];
        int r = pid_netns_name(pid, cur, sizeof cur);
        if (r < 0) return -2;    /* no such process (ENOENT), or not ours: the real file */
        return nsfd_placeholder(cur, flags);
    }
    if (!strncmp(path, "/var/run/netns/", 15)) name = path + 15;
    else if (!strncmp(path, "/run/netns/", 11)) name = path + 11;
    if (!name || !*name || strchr(name, '/') || strlen(name) >= sizeof nsfds[0].name) return -2;
    char a[8192], pat[80];
    if (service_query("{\"op\":\"netns_list\"}", a, sizeof a) < 0) return -2;
    snprintf(pat, sizeof pat, "\"%s\"", name);
    const char *list = json_find(a, "namespaces");
    int known = list && strstr(list, pat);
    if (known && (flags & O_CREAT) && (flags & O_EXCL)) { errno = EEXIST; return -1; }
    if (!known && (flags & O_CREAT))
        /* `ip netns add`: the file the name will be bound on; only the mount names it */
        return memfd_create("xfrmd-netns-new", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
    if (!known) return host_netns_open(path, name);
    return nsfd_placeholder(name, flags);
}

/* ---- emulated network namespaces for `ip netns`, `ip -n`, setns() and unshare() --------
 * A process's emulated namespace is $XFRMD_NETNS (read by every HELLO, inherited across
 * exec). unshare(CLONE_NEWNET) asks the server for a fresh unnamed namespace; a bind mount of
 * /proc/<self|pid>/ns/net onto /run/netns/NAME names it (`ip netns add`); setns() on a
 * placeholder fd of /run/netns/NAME enters it (`ip netns exec`, `ip -n`); umount2 of
 * /run/netns/NAME deletes it (`ip netns del`). The mounts `ip` makes to share /run/netns,
 * the file it creates there and the unlink are answered here: nothing of it reaches the
 * host's mount table or /run. */
static int netns_path(const char *path, const char **name)
{
    const char *n = NULL;
    if (!path) return 0;
    if (!strncmp(path, "/var/run/netns", 14)) n = path + 14;
    else if (!strncmp(path, "/run/netns", 10)) n = path + 10;
    else return 0;
    if (*n && *n != '/') return 0;
    if (*n == '/') n++;
    if (name) *name = n;
    return 1;
}

static char netns_before[128];   /* the namespace before the last unshare() */
/* the last name umount2 of /run/netns/NAME found not emulated, and whether it detached the
 * host's namespace for real: the unlink that follows (`ip netns del`) does the same */
static char netns_unlink_name[64];
static int netns_unlink_real;
static char inet_before[8];      /* XFRMD_INET then ("": unset) */

/* after the namespace changed: connections made for the old one are not reused */
static void netns_switched_keep(void)
{
    if (svc_fd >= 0 && svc_pid == my_pid()) { real_close(svc_fd); }
    svc_fd = -1;
    pthread_mutex_lock(&pool_lock);
    if (pool_pid == my_pid())
        for (int i = 0; i < pool_n; i++) real_close(pool[i].fd);
    pool_n = 0; pool_pid = my_pid();
    pthread_mutex_unlock(&pool_lock);
}

static void netns_switched(const char *name)
{
    setenv("XFRMD_NETNS", name, 1);
    /* the host's network is not this process's any more: its UDP sockets are emulated */
    if (!inet_off()) setenv("XFRMD_INET", "1", 1);
    netns_switched_keep();
}

static unsigned long long proc_start(int pid);

static int netns_op(const char *op, const char *name, char *answer, size_t alen)
{
    char q[512];
    snprintf(q, sizeof q, "{\"op\":\"%s\",\"name\":\"%s\",\"pid\":%d,\"start\":%llu}", op,
             name ? name : "", (int)my_pid(), proc_start((int)my_pid()));
    if (service_query(q, answer, alen) < 0) return -1;
    long e = json_int(answer, "errno", 0);
    if (e) { errno = (int)e; return -1; }
    return 0;
}

static const char *placeholder_name(int fd, char *out, size_t n)
{
    const char *found = NULL;
    pthread_mutex_lock(&nsfd_lock);
    for (int i = 0; i < nsfd_n; i++)
        if (nsfds[i].fd == fd) { snprintf(out, n, "%s", nsfds[i].name); found = out; break; }
    pthread_mutex_unlock(&nsfd_lock);
    return found;
}

int setns(int fd, int nstype)
{
    static int (*real)(int, int);
    if (!real) real = dlsym(RTLD_NEXT, "setns");
    load_all();
    char name[64], a[512];
    if ((nstype == 0 || nstype == CLONE_NEWNET) && placeholder_name(fd, name, sizeof name)) {
        if (netns_op("netns_enter", name, a, sizeof a) < 0) return -1;
        netns_switched(name);
        return 0;
    }
    return real(fd, nstype);
}

int unshare(int flags)
{
    static int (*real)(int);
    if (!real) real = dlsym(RTLD_NEXT, "unshare");
    load_all();
    if (flags & CLONE_NEWNET) {
        char a[512], name[128];
        if (netns_op("netns_unshare", NULL, a, sizeof a) < 0) return -1;
        const char *p = json_find(a, "name");
        if (!p) { errno = EIO; return -1; }
        json_str_at(p, name, sizeof name);
        const char *cur = getenv("XFRMD_NETNS");
        snprintf(netns_before, sizeof netns_before, "%s", cur ? cur : "");
        cur = getenv("XFRMD_INET");
        snprintf(inet_before, sizeof inet_before, "%s", cur ? cur : "");
        netns_switched(name);
        flags &= ~CLONE_NEWNET;
        if (!flags) return 0;
    }
    return real(flags);
}

int mount(const char *src, const char *target, const char *fstype, unsigned long flags,
          const void *data)
{
    static int (*real)(const char *, const char *, const char *, unsigned long, const void *);
    if (!real) real = dlsym(RTLD_NEXT, "mount");
    load_all();
    const char *name;
    if (!netns_path(target, &name)) return real(src, target, fstype, flags, data);
    if ((flags & MS_BIND) && *name && proc_ns_net_pid(src)) {
        /* `ip netns add` / `attach`: the namespace of that process gets the name */
        char a[512], q[600];
        int pid = (int)my_pid();
        if (strncmp(src, "/proc/self/", 11) && strncmp(src, "/proc/thread-self/", 18))
            pid = atoi(src + 6);
        snprintf(q, sizeof q, "{\"op\":\"netns_bind\",\"name\":\"%s\",\"pid\":%d}", name, pid);
        if (service_query(q, a, sizeof a) < 0) return -1;
        long e = json_int(a, "errno", 0);
        char why[256];
        if (e && json_str(a, "error", why, sizeof why) == 0) fprintf(stderr, "%s\n", why);
        if (e) { errno = (int)e; return -1; }
        if (!strncmp(src, "/proc/thread-self/", 18) && syscall(SYS_gettid) != my_pid()) {
            /* ip 6.x unshares in a thread so that it stays where it was: so does its env */
            if (netns_before[0]) setenv("XFRMD_NETNS", netns_before, 1);
            else unsetenv("XFRMD_NETNS");
            if (inet_before[0]) setenv("XFRMD_INET", inet_before, 1);
            else unsetenv("XFRMD_INET");
            netns_switched_keep();
        } else if (pid == (int)my_pid()) {
            setenv("XFRMD_NETNS", name, 1);
        }
        return 0;
    }
    return 0;        /* making /run/netns a shared mount point: nothing to do here */
}

int umount2(const char *target, int flags)
{
    static int (*real)(const char *, int);
    if (!real) real = dlsym(RTLD_NEXT, "umount2");
    load_all();
    const char *name;
    if (!netns_path(target, &name)) return real(target, flags);
    if (!*name) return 0;
    char a[512];
    if (netns_op("netns_umount", name, a, sizeof a) == 0) return 0;
    if (errno != ENOENT || strlen(name) >= sizeof netns_unlink_name) return -1;
    /* not an emulated namespace (`ip netns del NAME`, then unlink): a host-only name is
     * refused as its open is (XFRMD_HOST_NETNS=refuse: one line, ENOENT, nothing deleted),
     * or detached for real when entering host namespaces is allowed; a name that exists
     * nowhere fails as Linux's umount2 and unlink do (ENOENT) */
    struct stat st;
    netns_unlink_real = !host_netns_refused(target, name) && stat(target, &st) == 0;
    snprintf(netns_unlink_name, sizeof netns_unlink_name, "%s", name);
    if (netns_unlink_real) return real(target, flags);
    errno = ENOENT;
    return -1;
}

int umount(const char *target)
{
    return umount2(target, 0);
}

/* `ip netns monitor` watches /run/netns with inotify: the host's directory would never show
 * the emulated namespaces coming and going, so the watch is refused and says why */
int inotify_add_watch(int fd, const char *path, uint32_t mask)
{
    static int (*real)(int, const char *, uint32_t);
    if (!real) real = dlsym(RTLD_NEXT, "inotify_add_watch");
    if (netns_path(path, NULL)) {
        fprintf(stderr, "xfrmd: watching %s (ip netns monitor) is not emulated: the emulated "
                "namespaces are not files there\n", path);
        errno = EOPNOTSUPP;
        return -1;
    }
    return real(fd, path, mask);
}

int unlink(const char *path)
{
    static int (*real)(const char *);
    if (!real) real = dlsym(RTLD_NEXT, "unlink");
    load_all();
    const char *name;
    if (netns_path(path, &name) && *name) {
        if (strcmp(name, netns_unlink_name)) return 0;   /* the file `ip netns add` made */
        netns_unlink_name[0] = 0;         /* the name umount2 did not find emulated */
        if (netns_unlink_real) return real(path);
        errno = ENOENT;
        return -1;
    }
    return real(path);
}

int mkdir(const char *path, mode_t mode)
{
    static int (*real)(const char *, mode_t);
    if (!real) real = dlsym(RTLD_NEXT, "mkdir");
    load_all();
    const char *name;
    if (netns_path(path, &name) && !*name) return 0;
    return real(path, mode);
}

/* ---- namespace calls that bypass the PLT: dlsym() on libc's handle, syscall(), clone() --
 * ctypes (pyroute2's netns module: ctypes.CDLL("libc.so.6").mount / .unshare /
 * .syscall(__NR_setns, …)) looks functions up with dlsym() on libc's own handle, which finds
 * libc's and never the shim's. dlsym() here gives the shim's wrapper for the few names in
 * ns_calls when that handle resolves the name to the very function the shim wraps; every
 * other lookup is libc's. syscall() with the number of one of them is that call. clone()
 * with CLONE_NEWNET gives the child a fresh emulated namespace (copy_net_ns for a new
 * process); what cannot be emulated — the raw clone/clone3 system calls, or CLONE_NEWNET
 * with CLONE_VM (a child sharing the shim's memory cannot be in another namespace) — fails
 * with EOPNOTSUPP and says why: no real namespace is made under the shim. */
static void *(*real_dlsym_fn)(void *, const char *);

static void dlsym_init(void)
{
    /* dlsym's version differs by glibc release and architecture */
    static const char *const vers[] = { "GLIBC_2.34", "GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.0",
                                        "GLIBC_2.27", "GLIBC_2.35", "GLIBC_2.36", NULL };
    for (int i = 0; !real_dlsym_fn && vers[i]; i++)
        real_dlsym_fn = (void *(*)(void *, const char *))dlvsym(RTLD_NEXT, "dlsym", vers[i]);
}

int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...);

/* the shim's wrapper when libc's ``name`` is what ``found`` is, else ``found`` */
static void *ns_call_redirect(const char *name, void *found)
{
    static const struct { const char *name; void *fn; } ns_calls[] = {
        { "setns", (void *)setns }, { "unshare", (void *)unshare }, { "mount", (void *)mount },
        { "umount2", (void *)umount2 }, { "umount", (void *)umount },
        { "syscall", (void *)syscall }, { "clone", (void *)clone },
    };
    for (size_t i = 0; i < sizeof ns_calls / sizeof ns_calls[0]; i++)
        if (!strcmp(name, ns_calls[i].name))
            return real_dlsym_fn(RTLD_NEXT, name) == found ? ns_calls[i].fn : found;
    return found;
}

void *dlsym(void *handle, const char *name)
{
    if (!real_dlsym_fn) dlsym_init();
    /* RTLD_NEXT is relative to the caller: a tail call keeps the caller's return address */
    if (handle == RTLD_NEXT || handle == RTLD_DEFAULT)
        return real_dlsym_fn(handle, name);
    void *found = real_dlsym_fn(handle, name);
    return found ? ns_call_redirect(name, found) : found;
}

static int clone_refused(const char *what)
{
    fprintf(stderr, "xfrmd: %s is not emulated (the shim cannot make the "
            "new process's namespace an emulated one; unshare(CLONE_NEWNET) in the child "
            "is): %s\n", what, strerror(EOPNOTSUPP));
    errno = EOPNOTSUPP;
    return -1;
}

long syscall(long n, ...)
{
    static long (*real)(long, ...);
    if (!real) real = dlsym(RTLD_NEXT, "syscall");
    va_list ap;
    va_start(ap, n);
    long a[6];
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);   /* as many as the kernel takes */
    va_end(ap);
    switch (n) {
    case SYS_setns: return setns((int)a[0], (int)a[1]);
    case SYS_unshare: return unshare((int)a[0]);
    case SYS_mount:
        return mount((const char *)a[0], (const char *)a[1], (const char *)a[2],
                     (unsigned long)a[3], (const void *)a[4]);
    case SYS_umount2: return umount2((const char *)a[0], (int)a[1]);
#ifdef SYS_clone
    case SYS_clone:
        if (a[0] & CLONE_NEWNET) return clone_refused("the clone system call with CLONE_NEWNET");
        break;
#endif
#ifdef SYS_clone3
    case SYS_clone3: {
        const uint64_t *args = (const uint64_t *)a[0];     /* struct clone_args: flags first */
        if (args && (size_t)a[1] >= 8 && (args[0] & CLONE_NEWNET))
            return clone_refused("clone3() with CLONE_NEWNET");
        break;
    }
#endif
    default: break;
    }
    return real(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}

struct clone_netns { int (*fn)(void *); void *arg; };

/* the child of clone(CLONE_NEWNET) without CLONE_VM: its own copy of the shim's memory */
static int clone_netns_child(void *p)
{
    struct clone_netns *c = p;
    child_pid_reset();
    if (unshare(CLONE_NEWNET) < 0) {
        fprintf(stderr, "xfrmd: clone(CLONE_NEWNET): no emulated namespace for the child: %s\n",
                strerror(errno));
        _exit(127);
    }
    return c->fn(c->arg);
}

int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
    static int (*real)(int (*)(void *), void *, int, void *, ...);
    if (!real) real = dlsym(RTLD_NEXT, "clone");
    va_list ap;
    va_start(ap, arg);
    pid_t *ptid = va_arg(ap, pid_t *);
    void *tls = va_arg(ap, void *);
    pid_t *ctid = va_arg(ap, pid_t *);
    va_end(ap);
    if (!(flags & CLONE_NEWNET)) return real(fn, stack, flags, arg, ptid, tls, ctid);
    if (flags & (CLONE_VM | CLONE_THREAD)) return clone_refused("clone() with CLONE_NEWNET and CLONE_VM");
    struct clone_netns c = { fn, arg };   /* the child reads its own copy of it */
    before_fork();
    return real(clone_netns_child, stack, flags & ~CLONE_NEWNET, &c, ptid, tls, ctid);
}

int open(const char *path, int flags, ...)
{
    load_all();
    va_list ap; va_start(ap, flags);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
    va_end(ap);
    VPATH(path);
    if (is_virtual(path)) return virtual_open(path, flags);
    int nfd = netns_open(path, flags);
    if (nfd != -2) return nfd;
    return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    load_all();
    va_list ap; va_start(ap, flags);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
    va_end(ap);
    VPATH(path);
    if (is_virtual(path)) return virtual_open(path, flags);
    int nfd = netns_open(path, flags);
    if (nfd != -2) return nfd;
    return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    load_all();
    va_list ap; va_start(ap, flags);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
    va_end(ap);
    VPATH_AT(dirfd, path);
    if (is_virtual(path)) return virtual_open(path, flags);
    int nfd = netns_open(path, flags);
    if (nfd != -2) return nfd;
    return real_openat(dirfd, path, flags, mode);
}

/* _FORTIFY_SOURCE builds (procps' sysctl) call the checking variants of open/openat */
#define FORTIFIED_OPEN(name, params, args, dirfd)                                        \
int name params                                                                          \
{                                                                                        \
    static int (*real) params;                                                           \
    if (!real) real = dlsym(RTLD_NEXT, #name);                                           \
    load_all();                                                                          \
    VPATH_AT(dirfd, path);                                                               \
    if (is_virtual(path)) return virtual_open(path, flags);                              \
    int nfd = netns_open(path, flags);                                                   \
    if (nfd != -2) return nfd;                                                           \
    return real args;                                                                    \
}
FORTIFIED_OPEN(__open_2, (const char *path, int flags), (path, flags), AT_FDCWD)
FORTIFIED_OPEN(__open64_2, (const char *path, int flags), (path, flags), AT_FDCWD)
FORTIFIED_OPEN(__openat_2, (int dirfd, const char *path, int flags), (dirfd, path, flags), dirfd)
FORTIFIED_OPEN(__openat64_2, (int dirfd, const char *path, int flags), (dirfd, path, flags), dirfd)

static FILE *virtual_fopen(const char *path, const char *mode)
{
    int flags = (mode[0] == 'r' && !strchr(mode, '+')) ? O_RDONLY : O_WRONLY;
    int fd = virtual_open(path, flags);
    if (fd < 0) return NULL;
    return fdopen(fd, flags == O_RDONLY ? "r" : "w");
}

static int (*real_fflush)(FILE *);

/* fflush(): bash's echo builtin writes stdout through stdio and checks ferror() after
 * fflush() (sh_chkwrite): on a sysctl or sysfs fd this process opened (or dup'ed from one)
 * what was written is applied here, and a failed store sets the stream's error flag with
 * the errno, as the failed write() would have */
int fflush(FILE *f)
{
    if (!real_fflush) real_fflush = dlsym(RTLD_NEXT, "fflush");
    int r = real_fflush(f);
    int fd = f ? fileno(f) : -1;
    if (r == 0 && fd >= 0 && fd < SYSCTL_FDS && (sysctl_fds[fd / 8] & (1 << (fd % 8))) &&
        sysctl_apply(fd) < 0) {
#ifdef _IO_ERR_SEEN
        f->_flags |= _IO_ERR_SEEN;          /* glibc's FILE: what ferror() reads */
#endif
        return EOF;
    }
    return r;
}

/* fclose(): stdio writes through libc's own write, so a sysctl FILE is applied here, after
 * its buffer is flushed (procps sysctl reports the errno fclose() gives) */
int fclose(FILE *f)
{
    static int (*real)(FILE *);
    if (!real) real = dlsym(RTLD_NEXT, "fclose");
    if (!real_fflush) real_fflush = dlsym(RTLD_NEXT, "fflush");
    int fd = f ? fileno(f) : -1;
    int bad = 0, e = 0;
    char path[400];
    if (fd >= 0 && sysctl_fd_path(fd, path, sizeof path)) {   /* other streams: untouched */
        real_fflush(f);
        bad = sysctl_apply(fd) < 0; e = errno;
        sysctl_forget(fd);
    }
    int r = real(f);
    if (bad) { errno = e; return EOF; }
    return r;
}

FILE *fopen(const char *path, const char *mode)
{
    load_all();
    VPATH(path);
    if (is_virtual(path)) return virtual_fopen(path, mode);
    return real_fopen(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
    load_all();
    VPATH(path);
    if (is_virtual(path)) return virtual_fopen(path, mode);
    return real_fopen64(path, mode);
}


/* ---- stat, access and opendir of virtual paths ------------------------------------------
 * The server says what exists (service ops stat_file and list_dir); the shim fills in what
 * sysfs and debugfs show: directories 0755, files 0444/0644 (0200 write-only) unless the
 * server says otherwise, size 4096 (0 for procfs and debugfs), owned by root. */
static int vstat_query_x(const char *path, int *is_dir, int *mode, char *link, size_t ln,
                         char *real, size_t rn)
{
    char q[1024], esc[900], a[2048];
    int saved = errno;      /* a stat that succeeds leaves errno alone, as the syscall does */
    json_escape(path, strlen(path), esc, sizeof esc);
    snprintf(q, sizeof q, "{\"op\":\"stat_file\",\"path\":\"%s\"}", esc);
    if (service_query(q, a, sizeof a) < 0) return -1;
    long e = json_int(a, "errno", 0);
    if (e) { errno = (int)e; return -1; }
    errno = saved;
    *is_dir = (int)json_int(a, "dir", 0);
    *mode = (int)json_int(a, "mode", 0444);
    /* "link": the path itself is a symbolic link (its text); "path": links resolved */
    if (link && (!ln || json_str(a, "link", link, ln) < 0)) { if (ln) link[0] = 0; }
    if (real && json_str(a, "path", real, rn) < 0) snprintf(real, rn, "%s", path);
    return 0;
}

static int vstat_query(const char *path, int *is_dir, int *mode)
{
    return vstat_query_x(path, is_dir, mode, NULL, 0, NULL, 0);
}

static uint64_t path_ino(const char *p)
{
    uint64_t h = 1469598103934665603ull;          /* FNV-1a: stable per path */
    for (; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h | 1;
}

/* lstat (follow 0) of a link says so: a sysfs link is 0777 and has size 0
 * (kernfs_iop_getattr of a KERNFS_LINK node); stat follows it to its directory */
static int vstat_f(const char *path, struct stat *st, int follow)
{
    int d, m;
    char link[512] = "", real[512] = "";
    if (vstat_query_x(path, &d, &m, link, sizeof link, real, sizeof real) < 0) return -1;
    int is_link = !follow && link[0];
    memset(st, 0, sizeof *st);
    st->st_dev = 0x16;
    st->st_ino = (ino_t)path_ino(is_link ? path : real);
    if (is_link) {
        st->st_mode = S_IFLNK | 0777;
        st->st_nlink = 1;
        st->st_blksize = 4096;
        struct timespec now; clock_gettime(CLOCK_REALTIME, &now);
        st->st_atim = st->st_mtim = st->st_ctim = now;
        return 0;
    }
    st->st_mode = (mode_t)((d ? S_IFDIR : S_IFREG) | m);
    st->st_nlink = d ? 2 : 1;
    /* a sysfs attribute's inode has size PAGE_SIZE (sysfs_add_file_mode_ns); procfs files,
     * /proc/sys ones included (proc_sys_make_inode), and debugfs ones (debugfs_create_file)
     * have none */
    st->st_size = d || under(path, "/proc") || under(path, "/sys/kernel/debug") ? 0 : 4096;
    st->st_blksize = 4096;
    struct timespec now; clock_gettime(CLOCK_REALTIME, &now);
    st->st_atim = st->st_mtim = st->st_ctim = now;
    return 0;
}

static int vstat(const char *path, struct stat *st) { return vstat_f(path, st, 1); }
static int vlstat(const char *path, struct stat *st) { return vstat_f(path, st, 0); }

/* readlink(2) of a virtual path: the link's text, truncated to ``n`` without a NUL;
 * EINVAL for a file or directory */
static ssize_t vreadlink(const char *path, char *buf, size_t n)
{
    int d, m;
    char link[512] = "";
    if (vstat_query_x(path, &d, &m, link, sizeof link, NULL, 0) < 0) return -1;
    if (!link[0]) { errno = EINVAL; return -1; }
    size_t l = strlen(link);
    if (l > n) l = n;
    memcpy(buf, link, l);
    return (ssize_t)l;
}

/* ---- which namespace a process is in: /proc/PID/ns/net and the nsfs identity -----------
 * `ip netns identify PID` opens /proc/PID/ns/net, fstat()s it and looks for the entry of
 * /run/netns whose stat() has the same st_dev and st_ino; `ip netns pids NAME` and pyroute2's
 * pid_to_ns stat() /proc/PID/ns/net. An emulated namespace's nsfs inode (proc_ns_file:
 * dev 0:4) is derived from its name here, the same for its placeholder fds, its /run/netns
 * file and /proc/PID/ns/net of its processes. */
#define NSFS_DEV 4

/* when process ``pid`` started (clock ticks after boot: /proc/PID/stat field 22), 0 if
 * unknown; with the pid it names one process, whatever reuses the number later */
static unsigned long long proc_start(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = real_open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t got = real_read(fd, buf, sizeof buf - 1);
    real_close(fd);
    if (got <= 0) return 0;
    buf[got] = 0;
    char *p = strrchr(buf, ')');           /* the command name may hold spaces */
    for (int field = 2; p && field < 22; field++) {
        p = strchr(p + 1, ' ');
    }
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* the value of KEY= in an environment block (NUL-separated), or NULL */
static const char *env_block_value(const char *env, size_t len, const char *key)
{
    size_t k = strlen(key);
    for (size_t o = 0; o < len; o += strlen(env + o) + 1)
        if (!strncmp(env + o, key, k) && env[o + k] == '=') return env + o + k + 1;
    return NULL;
}

/* The emulated namespace of process ``pid`` into ``out``: 0; -1 (ENOENT) if there is no such
 * process; -2 if the process belongs to another xfrmd server (or its environment cannot be
 * read): its namespace is nothing of ours, the real object stands for it. */
static int pid_netns_name(int pid, char *out, size_t n)
{
    char q[128], a[512], path[64];
    if (pid == (int)my_pid()) {
        const char *cur = getenv("XFRMD_NETNS");
        snprintf(out, n, "%s", cur && *cur ? cur : "default");
        return 0;
    }
    snprintf(path, sizeof path, "/proc/%d/environ", pid);
    int fd = real_open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? -1 : -2;
    size_t cap = 65536, len = 0;
    char *env = malloc(cap + 1);
    ssize_t got = 0;
    while (env && len < cap && (got = real_read(fd, env + len, cap - len)) > 0) len += (size_t)got;
    real_close(fd);
    if (!env) return -2;
    env[len] = 0;
    const char *sock = env_block_value(env, len, "XFRMD_SOCKET");
    const char *mine = getenv("XFRMD_SOCKET");
    int ours = sock ? (mine && !strcmp(sock, mine)) : !(mine && *mine);
    if (sock && !ours) { free(env); return -2; }
    snprintf(out, n, "default");       /* a process outside xfrmd: init_net's counterpart */
    if (ours) {
        /* where the server saw it move (setns, unshare) or keep its sockets; the start time
         * tells a process from an earlier one with the same pid */
        const char *p;
        snprintf(q, sizeof q, "{\"op\":\"netns_pid\",\"pid\":%d,\"start\":%llu}", pid,
                 proc_start(pid));
        if (service_query(q, a, sizeof a) == 0 && (p = json_find(a, "name")) &&
            json_str_at(p, out, n) && *out) {
            free(env);
            return 0;
        }
        /* else where it started: XFRMD_NETNS in its environment (exec keeps it) */
        const char *ns = env_block_value(env, len, "XFRMD_NETNS");
        snprintf(out, n, "%s", ns && *ns ? ns : "default");
    }
    free(env);
    return 0;
}

/* the pid of /proc/<pid|self|thread-self>/ns/net, or 0 */
static int proc_ns_net_pid(const char *path)
{
    if (!path || strncmp(path, "/proc/", 6)) return 0;
    const char *p = path + 6;
    if (!strcmp(p, "self/ns/net") || !strcmp(p, "thread-self/ns/net")) return (int)my_pid();
    char *end;
    long pid = strtol(p, &end, 10);
    if (end == p || pid <= 0 || strcmp(end, "/ns/net")) return 0;
    return (int)pid;
}

static void nsfs_stat(const char *name, struct stat *st)
{
    char key[96];
    snprintf(key, sizeof key, "netns:%s", name);
    memset(st, 0, sizeof *st);
    st->st_dev = NSFS_DEV;
    st->st_ino = (ino_t)(0xF0000000u | (path_ino(key) & 0x0FFFFFFFu));
    st->st_mode = S_IFREG | 0444;
    st->st_nlink = 1;
    st->st_blksize = 4096;
}

/* stat() of a namespace path: 0 or -1 (errno), or -2 when ``path`` is not one */
static int netns_vstat(const char *path, struct stat *st)
{
    char name[128];
    const char *bound;
    int pid = proc_ns_net_pid(path);
    if (pid) {
        int r = pid_netns_name(pid, name, sizeof name);
        if (r < 0) return r;           /* -1: no such process; -2: the real file's stat */
        nsfs_stat(name, st);
        return 0;
    }
    if (!netns_path(path, &bound) || !*bound || strchr(bound, '/')) return -2;
    char a[8192], pat[160];
    if (strlen(bound) >= 64 || service_query("{\"op\":\"netns_list\"}", a, sizeof a) < 0) return -2;
    snprintf(pat, sizeof pat, "\"%s\"", bound);
    const char *list = json_find(a, "namespaces");
    if (!list || !strstr(list, pat)) return -2;
    nsfs_stat(bound, st);
    return 0;
}

/* The virtual path an open virtual file's memfd stands for (read: VFILE_MEMFD, written:
 * SYSCTL_MEMFD), or 0. ``st`` is what the real fstat said of the fd. */
static int vfile_fd_path(int fd, const struct stat *st, char *path, size_t n)
{
    char link[64], target[400];
    if (!S_ISREG(st->st_mode) || st->st_nlink != 0) return 0;      /* memfds only */
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    int saved = errno;
    ssize_t l = readlink(link, target, sizeof target - 1);
    errno = saved;
    if (l <= 0) return 0;
    target[l] = 0;
    const char *pre[] = {"/memfd:" VFILE_MEMFD, "/memfd:" SYSCTL_MEMFD};
    for (size_t i = 0; i < 2; i++) {
        if (strncmp(target, pre[i], strlen(pre[i]))) continue;
        char *d = strstr(target, " (deleted)");
        if (d) *d = 0;
        snprintf(path, n, "%s", target + strlen(pre[i]));
        return 1;
    }
    return 0;
}

/* fstat of an open sysfs/procfs file says what stat of its path says (vstat): a sysfs
 * attribute's inode is PAGE_SIZE long whatever its text (sysfs_add_file_mode_ns), a procfs
 * one 0 — not the memfd's length. If the file went away meanwhile (its device deleted),
 * the inode stays: the memfd's answer with that size. */
static void vfile_fstat(int fd, struct stat *st)
{
    char path[400];
    if (!vfile_fd_path(fd, st, path, sizeof path)) return;
    struct stat v;
    int saved = errno;
    if (vstat(path, &v) == 0) { *st = v; return; }
    errno = saved;
    st->st_size = under(path, "/proc") || under(path, "/sys/kernel/debug") ? 0 : 4096;
    st->st_nlink = 1;
}

int fstat(int fd, struct stat *st)
{
    char name[64];
    if (nsfd_n && placeholder_name(fd, name, sizeof name)) { nsfs_stat(name, st); return 0; }
    int r = raw_fstat(fd, st);
    if (r == 0) vfile_fstat(fd, st);
    return r;
}

int fstat64(int fd, struct stat64 *st)
{
    static int (*real)(int, struct stat64 *);
    if (!real) real = dlsym(RTLD_NEXT, "fstat64");
    char name[64];
    if (nsfd_n && placeholder_name(fd, name, sizeof name)) {
        nsfs_stat(name, (struct stat *)st);
        return 0;
    }
    int r = real(fd, st);
    if (r == 0) vfile_fstat(fd, (struct stat *)st);
    return r;
}

#define STAT_WRAP(name, type, vst) \
    int name(const char *path, type *st) { \
        static int (*real)(const char *, type *); \
        if (!real) real = dlsym(RTLD_NEXT, #name); \
        VPATH(path); \
        if (is_virtual(path)) return vst(path, (struct stat *)st); \
        int nr = netns_vstat(path, (struct stat *)st); \
        if (nr != -2) return nr; \
        return real(path, st); \
    }
STAT_WRAP(stat, struct stat, vstat)
STAT_WRAP(lstat, struct stat, vlstat)
STAT_WRAP(stat64, struct stat64, vstat)
STAT_WRAP(lstat64, struct stat64, vlstat)

#define FSTATAT_WRAP(name, type) \
    int name(int dfd, const char *path, type *st, int flags) { \
        static int (*real)(int, const char *, type *, int); \
        if (!real) real = dlsym(RTLD_NEXT, #name); \
        VPATH_AT(dfd, path); \
        if (is_virtual(path)) \
            return vstat_f(path, (struct stat *)st, !(flags & AT_SYMLINK_NOFOLLOW)); \
        int nr = netns_vstat(path, (struct stat *)st); \
        if (nr != -2) return nr; \
        return real(dfd, path, st, flags); \
    }
FSTATAT_WRAP(fstatat, struct stat)
FSTATAT_WRAP(fstatat64, struct stat64)

/* programs built against glibc before 2.33 call these */
#define XSTAT_WRAP(name, type, vst) \
    int name(int ver, const char *path, type *st) { \
        static int (*real)(int, const char *, type *); \
        if (!real) real = dlsym(RTLD_NEXT, #name); \
        VPATH(path); \
        if (is_virtual(path)) return vst(path, (struct stat *)st); \
        int nr = netns_vstat(path, (struct stat *)st); \
        if (nr != -2) return nr; \
        return real(ver, path, st); \
    }
XSTAT_WRAP(__xstat, struct stat, vstat)
XSTAT_WRAP(__lxstat, struct stat, vlstat)
XSTAT_WRAP(__xstat64, struct stat64, vstat)
XSTAT_WRAP(__lxstat64, struct stat64, vlstat)

int __fxstatat(int ver, int dfd, const char *path, struct stat *st, int flags)
{
    static int (*real)(int, int, const char *, struct stat *, int);
    if (!real) real = dlsym(RTLD_NEXT, "__fxstatat");
    VPATH_AT(dfd, path);
    if (is_virtual(path)) return vstat_f(path, st, !(flags & AT_SYMLINK_NOFOLLOW));
    return real(ver, dfd, path, st, flags);
}

int statx(int dfd, const char *path, int flags, unsigned int mask, struct statx *sx)
{
    static int (*real)(int, const char *, int, unsigned int, struct statx *);
    if (!real) real = dlsym(RTLD_NEXT, "statx");
    struct stat st;
    VPATH_AT(dfd, path);
    int nr = is_virtual(path) ? vstat_f(path, &st, !(flags & AT_SYMLINK_NOFOLLOW))
                              : netns_vstat(path, &st);
    if (nr == -2) return real(dfd, path, flags, mask, sx);
    if (nr < 0) return -1;
    memset(sx, 0, sizeof *sx);
    sx->stx_mask = STATX_BASIC_STATS;
    sx->stx_blksize = (uint32_t)st.st_blksize;
    sx->stx_nlink = (uint32_t)st.st_nlink;
    sx->stx_mode = (uint16_t)st.st_mode;
    sx->stx_ino = st.st_ino;
    sx->stx_size = (uint64_t)st.st_size;
    sx->stx_atime.tv_sec = sx->stx_mtime.tv_sec = sx->stx_ctime.tv_sec = st.st_mtim.tv_sec;
    sx->stx_dev_minor = (uint32_t)st.st_dev;
    return 0;
}

/* access(2) for root and for others: the owner is root, so others use the "other" bits;
 * root may read and write anything and execute what has an x bit (directories: search) */
static int vaccess(const char *path, int amode, int effective)
{
    int d, m;
    if (vstat_query(path, &d, &m) < 0) return -1;
    if (amode == F_OK) return 0;
    uid_t uid = effective ? geteuid() : getuid();
    int ok;
    if (uid == 0) ok = !(amode & X_OK) || d || (m & 0111);
    else ok = !((amode & R_OK) && !(m & 04)) && !((amode & W_OK) && !(m & 02)) &&
              !((amode & X_OK) && !(m & 01));
    if (!ok) { errno = EACCES; return -1; }
    return 0;
}

int access(const char *path, int amode)
{
    static int (*real)(const char *, int);
    if (!real) real = dlsym(RTLD_NEXT, "access");
    VPATH(path);
    if (is_virtual(path)) return vaccess(path, amode, 0);
    return real(path, amode);
}

int faccessat(int dfd, const char *path, int amode, int flags)
{
    static int (*real)(int, const char *, int, int);
    if (!real) real = dlsym(RTLD_NEXT, "faccessat");
    VPATH_AT(dfd, path);
    if (is_virtual(path)) return vaccess(path, amode, (flags & AT_EACCESS) != 0);
    return real(dfd, path, amode, flags);
}

int euidaccess(const char *path, int amode)
{
    static int (*real)(const char *, int);
    if (!real) real = dlsym(RTLD_NEXT, "euidaccess");
    VPATH(path);
    if (is_virtual(path)) return vaccess(path, amode, 1);
    return real(path, amode);
}

int eaccess(const char *path, int amode)
{
    return euidaccess(path, amode);
}

/* ---- extended attributes of virtual paths ------------------------------------------------
 * `ls -l` asks lgetxattr(security.selinux) and getxattr(system.posix_acl_access) of every
 * file; the real calls would answer ENOENT for an emulated device's file. A virtual file
 * has no xattrs, and answers as its filesystem does: procfs has no xattr handlers
 * (EOPNOTSUPP for every name, as vfs_getxattr without a handler); sysfs (kernfs_xattr_get
 * behind kernfs_trusted/security/user handlers) gives ENODATA for trusted.*, security.*
 * and user.* and EOPNOTSUPP for the rest (no POSIX ACLs). listxattr lists nothing. */
#include <sys/xattr.h>

static int vxattr_prefix(const char *name, const char *prefix)
{
    return !strncmp(name, prefix, strlen(prefix));
}

static ssize_t vgetxattr(const char *path, const char *name)
{
    int d, m;
    if (vstat_query(path, &d, &m) < 0) return -1;
    int kernfs = under(path, "/sys");
    if (kernfs && (vxattr_prefix(name, "security.") || vxattr_prefix(name, "trusted.") ||
                   vxattr_prefix(name, "user.")))
        errno = ENODATA;
    else
        errno = EOPNOTSUPP;
    return -1;
}

static ssize_t vlistxattr(const char *path)
{
    int d, m;
    if (vstat_query(path, &d, &m) < 0) return -1;
    return 0;
}

#define GETXATTR_WRAP(fn) \
    ssize_t fn(const char *path, const char *name, void *value, size_t size) { \
        static ssize_t (*real)(const char *, const char *, void *, size_t); \
        if (!real) real = dlsym(RTLD_NEXT, #fn); \
        VPATH(path); \
        if (is_virtual(path)) return vgetxattr(path, name); \
        return real(path, name, value, size); \
    }
GETXATTR_WRAP(getxattr)
GETXATTR_WRAP(lgetxattr)

#define LISTXATTR_WRAP(fn) \
    ssize_t fn(const char *path, char *list, size_t size) { \
        static ssize_t (*real)(const char *, char *, size_t); \
        if (!real) real = dlsym(RTLD_NEXT, #fn); \
        VPATH(path); \
        if (is_virtual(path)) return vlistxattr(path); \
        return real(path, list, size); \
    }
LISTXATTR_WRAP(listxattr)
LISTXATTR_WRAP(llistxattr)

/* opendir of a virtual directory: its entries, as the server lists them, are made in a
 * private temporary directory that the DIR reads; closedir removes it */
#define VDIRS 16
static struct { DIR *d; char path[64]; int dots; } vdirs[VDIRS];
static pthread_mutex_t vdir_lock = PTHREAD_MUTEX_INITIALIZER;

static void rm_tree(const char *dir)
{
    DIR *d = NULL;
    static DIR *(*real_od)(const char *);
    static int (*real_cd)(DIR *);
    if (!real_od) real_od = dlsym(RTLD_NEXT, "opendir");
    if (!real_cd) real_cd = dlsym(RTLD_NEXT, "closedir");
    if (!(d = real_od(dir))) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) < 0) rmdir(p);
    }
    real_cd(d);
    rmdir(dir);
}

ssize_t readlink(const char *path, char *buf, size_t n)
{
    static ssize_t (*real)(const char *, char *, size_t);
    if (!real) real = dlsym(RTLD_NEXT, "readlink");
    VPATH(path);
    if (is_virtual(path)) return vreadlink(path, buf, n);
    return real(path, buf, n);
}

ssize_t readlinkat(int dfd, const char *path, char *buf, size_t n)
{
    static ssize_t (*real)(int, const char *, char *, size_t);
    if (!real) real = dlsym(RTLD_NEXT, "readlinkat");
    VPATH_AT(dfd, path);
    if (is_virtual(path)) return vreadlink(path, buf, n);
    return real(dfd, path, buf, n);
}

ssize_t __readlink_chk(const char *path, char *buf, size_t n, size_t buflen)
{
    (void)buflen;
    return readlink(path, buf, n);
}

ssize_t __readlinkat_chk(int dfd, const char *path, char *buf, size_t n, size_t buflen)
{
    (void)buflen;
    return readlinkat(dfd, path, buf, n);
}

/* the environment an exec passes on: ``e`` with XFRMD_VCWD set to the virtual cwd, or
 * without it when there is none (a shell builds its children's environment itself) */
static char **vcwd_env(char *const e[])
{
    static __thread char var[PATH_MAX + 16];
    size_t n = 0, o = 0;
    int had = 0;
    for (; e && e[n]; n++) had |= !strncmp(e[n], "XFRMD_VCWD=", 11);
    if (!vcwd[0] && !had) return (char **)e;
    char **v = malloc((n + 2) * sizeof *v);          /* the exec replaces the image */
    if (!v) return (char **)e;
    for (size_t i = 0; i < n; i++) if (strncmp(e[i], "XFRMD_VCWD=", 11)) v[o++] = e[i];
    if (vcwd[0]) { snprintf(var, sizeof var, "XFRMD_VCWD=%s", vcwd); v[o++] = var; }
    v[o] = NULL;
    return v;
}

int chdir(const char *path)
{
    static int (*real)(const char *);
    if (!real) real = dlsym(RTLD_NEXT, "chdir");
    VPATH(path);
    if (!is_virtual(path)) {
        int r = real(path);
        if (r == 0 && vcwd[0]) { vcwd[0] = 0; unsetenv("XFRMD_VCWD"); }
        return r;
    }
    int d, m;
    char where[PATH_MAX];
    if (vstat_query_x(path, &d, &m, NULL, 0, where, sizeof where) < 0) return -1;
    if (!d) { errno = ENOTDIR; return -1; }           /* path_lookupat: not a directory */
    if (real("/") < 0) return -1;
    snprintf(vcwd, sizeof vcwd, "%s", where);
    setenv("XFRMD_VCWD", vcwd, 1);
    return 0;
}

int fchdir(int fd)
{
    static int (*real)(int);
    if (!real) real = dlsym(RTLD_NEXT, "fchdir");
    int r = real(fd);
    if (r == 0 && vcwd[0]) { vcwd[0] = 0; unsetenv("XFRMD_VCWD"); }
    return r;
}

/* the virtual cwd, as the getcwd system call gives the real one (ERANGE if ``size`` is
 * too small; glibc allocates when ``buf`` is NULL) */
static char *vgetcwd(char *buf, size_t size)
{
    size_t n = strlen(vcwd) + 1;
    if (!buf) {
        buf = malloc(size > n ? size : n);
        if (!buf) { errno = ENOMEM; return NULL; }
        size = size > n ? size : n;
    }
    if (size < n) { errno = size ? ERANGE : EINVAL; return NULL; }
    memcpy(buf, vcwd, n);
    return buf;
}

char *getcwd(char *buf, size_t size)
{
    static char *(*real)(char *, size_t);
    if (!real) real = dlsym(RTLD_NEXT, "getcwd");
    return vcwd[0] ? vgetcwd(buf, size) : real(buf, size);
}

char *__getcwd_chk(char *buf, size_t size, size_t buflen)
{
    (void)buflen;
    return getcwd(buf, size);
}

char *get_current_dir_name(void)
{
    static char *(*real)(void);
    if (!real) real = dlsym(RTLD_NEXT, "get_current_dir_name");
    return vcwd[0] ? vgetcwd(NULL, 0) : real();
}

/* realpath resolves with readlink/lstat inside libc, where the virtual tree is not
 * visible: an emulated device's /proc/sys or /sys path would not resolve (sysctl checks
 * every path it reads this way). The server resolves a virtual path (stat_file "path"): its
 * links (/sys/class/net/DEV) replaced by their targets. */
static char *virtual_realpath(const char *path, char *resolved)
{
    int d, m;
    char real[PATH_MAX];
    if (vstat_query_x(path, &d, &m, NULL, 0, real, sizeof real) < 0) return NULL;
    size_t n = strlen(real);
    char *out = resolved ? resolved : malloc(PATH_MAX);
    if (!out) { errno = ENOMEM; return NULL; }
    memcpy(out, real, n + 1);
    return out;
}

char *realpath(const char *path, char *resolved)
{
    static char *(*real)(const char *, char *);
    if (!real) real = dlsym(RTLD_NEXT, "realpath");
    load_all();
    VPATH(path);
    if (is_virtual(path)) return virtual_realpath(path, resolved);
    return real(path, resolved);
}

char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen)
{
    static char *(*real)(const char *, char *, size_t);
    if (!real) real = dlsym(RTLD_NEXT, "__realpath_chk");
    load_all();
    VPATH(path);
    if (is_virtual(path)) return virtual_realpath(path, resolved);
    return real(path, resolved, resolvedlen);
}

DIR *opendir(const char *path)
{
    static DIR *(*real)(const char *);
    if (!real) real = dlsym(RTLD_NEXT, "opendir");
    load_all();
    const char *nsname = NULL;
    int nsdir = netns_path(path, &nsname) && !*nsname;
    VPATH(path);
    if (!is_virtual(path) && !nsdir) return real(path);
    char q[1024], esc[900];
    json_escape(nsdir ? "/run/netns" : path, strlen(nsdir ? "/run/netns" : path), esc, sizeof esc);
    snprintf(q, sizeof q, "{\"op\":\"list_dir\",\"path\":\"%s\"}", esc);
    char *a = malloc(RECORD_MAX);
    if (!a) { errno = ENOMEM; return NULL; }
    if (service_query(q, a, RECORD_MAX) < 0) { free(a); return NULL; }
    long e = json_int(a, "errno", 0);
    if (e) { free(a); errno = (int)e; return NULL; }
    const char *tmp = getenv("TMPDIR");
    char dir[64];
    snprintf(dir, sizeof dir, "%s/xfrmd-dir-XXXXXX", tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    if (!mkdtemp(dir)) { free(a); return NULL; }
    /* "entries": [["name", is_dir], …] */
    const char *p = json_find(a, "entries");
    while (p && (p = strchr(p, '"'))) {
        char name[256], full[512];
        p = json_str_at(p, name, sizeof name);
        while (*p == ',' || *p == ' ') p++;
        int is_dir = (*p == '1'), is_link = (*p == '2');
        if (!name[0] || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) continue;
        snprintf(full, sizeof full, "%s/%s", dir, name);
        if (is_dir) mkdir(full, 0755);
        else if (is_link) { if (symlink(name, full) < 0) continue; }    /* readdir: DT_LNK */
        else { int f = real_open(full, O_CREAT | O_WRONLY | O_CLOEXEC, 0444); if (f >= 0) real_close(f); }
    }
    free(a);
    DIR *d = real(dir);
    if (!d) { rm_tree(dir); return NULL; }
    pthread_mutex_lock(&vdir_lock);
    int slot = -1;
    for (int i = 0; i < VDIRS; i++) if (!vdirs[i].d) { slot = i; break; }
    if (slot >= 0) {
        vdirs[slot].d = d; vdirs[slot].dots = 0;
        snprintf(vdirs[slot].path, sizeof vdirs[slot].path, "%s", dir);
    }
    pthread_mutex_unlock(&vdir_lock);
    /* more than VDIRS open at once: that one's temporary directory stays behind */
    return d;
}

/* A virtual directory reads "." and ".." first, as procfs and sysfs give them (sysctl
 * skips the first two entries unread); the temporary directory's own come in any order. */
static int vdir_slot(DIR *d)
{
    for (int i = 0; i < VDIRS; i++) if (vdirs[i].d == d) return i;
    return -1;
}

#define VDIR_READDIR(name, type)                                                          \
type *name(DIR *d)                                                                        \
{                                                                                         \
    static type *(*real)(DIR *);                                                          \
    static __thread type dot;                                                             \
    if (!real) real = dlsym(RTLD_NEXT, #name);                                            \
    int slot = d ? vdir_slot(d) : -1;                                                     \
    if (slot < 0) return real(d);                                                         \
    if (vdirs[slot].dots < 2) {                                                           \
        memset(&dot, 0, sizeof dot);                                                      \
        dot.d_type = DT_DIR;                                                              \
        strcpy(dot.d_name, vdirs[slot].dots++ ? ".." : ".");                              \
        return &dot;                                                                      \
    }                                                                                     \
    type *e;                                                                              \
    while ((e = real(d)) && (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")))       \
        ;                                                                                 \
    return e;                                                                             \
}
VDIR_READDIR(readdir, struct dirent)
VDIR_READDIR(readdir64, struct dirent64)

int closedir(DIR *d)
{
    static int (*real)(DIR *);
    if (!real) real = dlsym(RTLD_NEXT, "closedir");
    char dir[64] = "";
    pthread_mutex_lock(&vdir_lock);
    for (int i = 0; i < VDIRS; i++)
        if (vdirs[i].d == d) { snprintf(dir, sizeof dir, "%s", vdirs[i].path); vdirs[i].d = NULL; break; }
    pthread_mutex_unlock(&vdir_lock);
    int r = real(d);
    if (dir[0]) rm_tree(dir);
    return r;
}
