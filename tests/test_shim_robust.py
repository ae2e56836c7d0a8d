"""Unusual but legal uses of netlink sockets, through the preload shim (`xfrmd run`): a small
C program and Python's own socket module use non-blocking sockets, poll, epoll, fork (the child
uses the parent's socket and one of its own), dup/dup2/dup3/F_DUPFD and SOCK_CLOEXEC + exec.
Each case checks what a program sees on Linux: the answers, the 12-byte sender address, the
port ids, EAGAIN where nothing is queued, EBADF after exec."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from .conftest import require

XFRMD = [sys.executable, "-m", "xfrmd.cli"]

PROG = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/xfrm.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#define CHECK(c) do { if (!(c)) { printf("FAIL %s:%d %s errno=%d\n", __func__, __LINE__, #c, errno); exit(1); } } while (0)

static int nl_socket(int flags)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | flags, NETLINK_XFRM);
    CHECK(fd >= 0);
    return fd;
}

static unsigned portid(int fd)
{
    struct sockaddr_nl a; socklen_t l = sizeof a;
    memset(&a, 0xff, sizeof a);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &l) == 0);
    CHECK(l == 12 && a.nl_family == AF_NETLINK);
    return a.nl_pid;
}

/* XFRM_MSG_GETSADINFO: always answered with XFRM_MSG_NEWSADINFO */
static void ask(int fd, unsigned seq)
{
    struct { struct nlmsghdr h; unsigned flags; } m = {
        { sizeof m, XFRM_MSG_GETSADINFO, NLM_F_REQUEST, seq, 0 }, 0xffffffff };
    CHECK(send(fd, &m, sizeof m, 0) == (ssize_t)sizeof m);
}

/* one answer via recvmsg: the sender is the kernel (12 bytes, pid 0), the seq is ours */
static void answer(int fd, unsigned seq, int flags)
{
    char buf[8192];
    struct sockaddr_nl from; memset(&from, 0xff, sizeof from);
    struct iovec iov = { buf, sizeof buf };
    struct msghdr mh = { .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t n = recvmsg(fd, &mh, flags);
    CHECK(n >= 16);
    struct nlmsghdr *h = (void *)buf;
    CHECK(mh.msg_namelen == 12 && from.nl_family == AF_NETLINK && from.nl_pid == 0);
    CHECK(h->nlmsg_type == XFRM_MSG_NEWSADINFO && h->nlmsg_seq == seq);
    CHECK(h->nlmsg_pid == portid(fd));
}

static void nothing_queued(int fd)
{
    char b[64];
    errno = 0;
    CHECK(recv(fd, b, sizeof b, MSG_DONTWAIT) == -1 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

static int t_nonblock(void)
{
    int fd = nl_socket(SOCK_NONBLOCK);
    struct sockaddr_nl a = { .nl_family = AF_NETLINK };
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    char b[64];
    errno = 0;
    CHECK(recv(fd, b, sizeof b, 0) == -1 && errno == EAGAIN);      /* O_NONBLOCK, empty */
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
    ask(fd, 1);
    struct pollfd p = { fd, POLLIN, 0 };
    CHECK(poll(&p, 1, 5000) == 1 && (p.revents & POLLIN));
    answer(fd, 1, 0);
    nothing_queued(fd);
    /* back to blocking with fcntl: a blocking read waits for the answer */
    CHECK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == 0);
    ask(fd, 2);
    answer(fd, 2, 0);
    /* an unbound non-blocking socket: the first send binds it */
    int u = nl_socket(SOCK_NONBLOCK);
    CHECK(portid(u) == 0);
    ask(u, 3);
    CHECK(portid(u) != 0);
    CHECK(poll(&(struct pollfd){ u, POLLIN, 0 }, 1, 5000) == 1);
    answer(u, 3, MSG_DONTWAIT);
    close(u);
    close(fd);
    printf("nonblock ok\n");
    return 0;
}

static int t_epoll(void)
{
    int fd = nl_socket(SOCK_NONBLOCK | SOCK_CLOEXEC), ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd }, out[4];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0);
    CHECK(epoll_wait(ep, out, 4, 100) == 0);                       /* nothing yet */
    for (unsigned s = 10; s < 13; s++) ask(fd, s);
    for (unsigned s = 10; s < 13; s++) {
        CHECK(epoll_wait(ep, out, 4, 5000) == 1 && out[0].data.fd == fd);
        answer(fd, s, 0);
    }
    CHECK(epoll_wait(ep, out, 4, 100) == 0);
    nothing_queued(fd);
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) == 0);
    close(ep); close(fd);
    printf("epoll ok\n");
    return 0;
}

static int t_fork(void)
{
    int fd = nl_socket(0);
    ask(fd, 20);
    answer(fd, 20, 0);
    unsigned parent_port = portid(fd);
    CHECK(parent_port == (unsigned)getpid());
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        /* the child uses the parent's socket: same port id, answers come to it */
        CHECK(portid(fd) == parent_port);
        ask(fd, 21);
        answer(fd, 21, 0);
        /* and a socket of its own: the first of its process in NETLINK_XFRM gets its pid */
        int own = nl_socket(0);
        ask(own, 22);
        answer(own, 22, 0);
        CHECK(portid(own) == (unsigned)getpid());
        close(own);
        /* an interface lookup reconnects the per-process service connection */
        CHECK(if_nametoindex("lo") == 1);
        _exit(0);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ask(fd, 23);                                   /* still the parent's, still working */
    answer(fd, 23, 0);
    CHECK(if_nametoindex("lo") == 1);
    close(fd);
    printf("fork ok\n");
    return 0;
}

static int t_dup(void)
{
    int fd = nl_socket(0);
    struct sockaddr_nl a = { .nl_family = AF_NETLINK };
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    unsigned p = portid(fd);
    int d1 = dup(fd);
    CHECK(d1 >= 0 && portid(d1) == p);             /* the same socket behind both */
    ask(d1, 30);
    answer(fd, 30, 0);
    ask(fd, 31);
    answer(d1, 31, 0);
    CHECK(dup2(fd, 200) == 200 && portid(200) == p);
    ask(200, 32);
    answer(200, 32, 0);
    int d3 = fcntl(fd, F_DUPFD_CLOEXEC, 300);
    CHECK(d3 >= 300 && portid(d3) == p && (fcntl(d3, F_GETFD) & FD_CLOEXEC));
    CHECK(dup3(fd, 400, O_CLOEXEC) == 400 && portid(400) == p);
    close(fd);                                     /* the others keep the socket alive */
    ask(d1, 33);
    answer(d3, 33, 0);
    /* dup2 over a netlink fd: the old one is gone, the new one is the other socket */
    int other = nl_socket(0);
    ask(other, 34);
    answer(other, 34, 0);
    unsigned po = portid(other);
    CHECK(po != p);
    CHECK(dup2(other, d1) == d1 && portid(d1) == po);
    ask(d1, 35);
    answer(other, 35, 0);
    close(d1); close(200); close(d3); close(400);
    ask(other, 36);
    answer(other, 36, 0);
    close(other);
    /* a plain socket reusing a closed netlink fd number is a plain socket */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_storage ss; socklen_t l = sizeof ss;
    CHECK(u >= 0 && getsockname(u, (struct sockaddr *)&ss, &l) == 0 && ss.ss_family == AF_INET);
    close(u);
    printf("dup ok\n");
    return 0;
}

static int t_cloexec(const char *self)
{
    int keep = nl_socket(0), gone = nl_socket(SOCK_CLOEXEC);
    ask(keep, 40); answer(keep, 40, 0);
    ask(gone, 41); answer(gone, 41, 0);
    CHECK(fcntl(gone, F_GETFD) & FD_CLOEXEC);
    CHECK(!(fcntl(keep, F_GETFD) & FD_CLOEXEC));
    int one = 1;
    CHECK(setsockopt(keep, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one) == 0);
    /* and one that has sent nothing yet (what the shim holds back goes out before exec) */
    int fresh = nl_socket(0);
    CHECK(setsockopt(fresh, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one) == 0);
    char a[16], b[16], c[16], d[16];
    snprintf(a, sizeof a, "%d", gone); snprintf(b, sizeof b, "%d", keep);
    snprintf(c, sizeof c, "%u", portid(keep)); snprintf(d, sizeof d, "%d", fresh);
    execl(self, self, "after-exec", a, b, c, d, (char *)NULL);
    CHECK(0);
    return 1;
}

static int t_after_exec(int gone, int keep, unsigned keep_port, int fresh)
{
    errno = 0;
    CHECK(fcntl(gone, F_GETFD) == -1 && errno == EBADF);   /* closed by exec */
    CHECK(fcntl(keep, F_GETFD) >= 0);                       /* inherited */
    /* the inherited fd is still the same netlink socket: its address, options, answers */
    CHECK(portid(keep) == keep_port);
    int v = 0; socklen_t vl = sizeof v;
    CHECK(getsockopt(keep, SOL_NETLINK, NETLINK_EXT_ACK, &v, &vl) == 0 && v == 1);
    CHECK(getsockopt(keep, SOL_SOCKET, SO_PROTOCOL, &v, &vl) == 0 && v == NETLINK_XFRM);
    ask(keep, 43); answer(keep, 43, 0);
    close(keep);
    CHECK(portid(fresh) == 0);                              /* still unbound */
    v = 0;
    CHECK(getsockopt(fresh, SOL_NETLINK, NETLINK_EXT_ACK, &v, &vl) == 0 && v == 1);
    ask(fresh, 44); answer(fresh, 44, 0);
    close(fresh);
    /* the shim's own connections stay out of the program's fd numbers */
    CHECK(if_nametoindex("lo") == 1);
    int n = open("/dev/null", O_RDONLY), low = keep < gone ? keep : gone;
    CHECK(n == (fresh < low ? fresh : low));
    close(n);
    /* and netlink works in the new image */
    int fd = nl_socket(0);
    ask(fd, 42); answer(fd, 42, 0);
    printf("cloexec ok\n");
    return 0;
}

/* GETSADINFO with NLM_F_ACK: NEWSADINFO, then the ACK */
static void ask_ack(int fd, unsigned seq)
{
    struct { struct nlmsghdr h; unsigned flags; } m = {
        { sizeof m, XFRM_MSG_GETSADINFO, NLM_F_REQUEST | NLM_F_ACK, seq, 0 }, 0xffffffff };
    CHECK(send(fd, &m, sizeof m, 0) == (ssize_t)sizeof m);
}

static void answer_ack(int fd, unsigned seq)
{
    char buf[8192];
    answer(fd, seq, 0);
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    struct nlmsghdr *h = (void *)buf;
    CHECK(n >= 20 && h->nlmsg_type == NLMSG_ERROR && h->nlmsg_seq == seq);
    CHECK(((struct nlmsgerr *)NLMSG_DATA(h))->error == 0);
}

/* an OUT policy 10.9.0.<i>/32 → any, with NLM_F_ACK */
static void add_policy(int fd, int i)
{
    struct { struct nlmsghdr h; struct xfrm_userpolicy_info p; } m;
    memset(&m, 0, sizeof m);
    m.h = (struct nlmsghdr){ sizeof m, XFRM_MSG_NEWPOLICY, NLM_F_REQUEST | NLM_F_ACK, 900 + i, 0 };
    m.p.sel.family = AF_INET;
    m.p.sel.saddr.a4 = htonl(0x0a090000 + i);
    m.p.sel.prefixlen_s = 32;
    m.p.dir = XFRM_POLICY_OUT;
    m.p.lft.soft_byte_limit = m.p.lft.hard_byte_limit = XFRM_INF;
    m.p.lft.soft_packet_limit = m.p.lft.hard_packet_limit = XFRM_INF;
    CHECK(send(fd, &m, sizeof m, 0) == (ssize_t)sizeof m);
    char buf[1024];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    struct nlmsghdr *h = (void *)buf;
    CHECK(n >= 20 && h->nlmsg_type == NLMSG_ERROR && ((struct nlmsgerr *)NLMSG_DATA(h))->error == 0);
}

/* The shim keeps a closed socket's connection for the next socket() (docs/protocol.md,
 * RELEASE and BATCH). Nothing of the old socket may show through the new one. */
static int t_reuse(void)
{
    int a = nl_socket(0);
    int one = 1;
    CHECK(setsockopt(a, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one) == 0);
    ask_ack(a, 50); answer_ack(a, 50);
    CHECK(portid(a) == (unsigned)getpid());
    close(a);
    /* the closed number is free again, as on Linux */
    int n = open("/dev/null", O_RDONLY);
    CHECK(n == a);
    close(n);
    int b = nl_socket(0);
    CHECK(b == a);
    CHECK(portid(b) == 0);                                   /* a new socket is unbound */
    int v = -1; socklen_t vl = sizeof v;
    CHECK(getsockopt(b, SOL_NETLINK, NETLINK_EXT_ACK, &v, &vl) == 0 && v == 0);
    ask_ack(b, 51); answer_ack(b, 51);
    CHECK(portid(b) == (unsigned)getpid());                  /* the old one let its id go */
    /* closed with its answer unread: the next socket never sees that answer */
    ask_ack(b, 52);
    close(b);
    int c = nl_socket(0);
    ask_ack(c, 53); answer_ack(c, 53);
    nothing_queued(c);
    close(c);
    /* a socket in the policy group: its events do not reach the next socket */
    int g = nl_socket(0);
    struct sockaddr_nl ga = { .nl_family = AF_NETLINK, .nl_groups = XFRMGRP_POLICY };
    CHECK(bind(g, (struct sockaddr *)&ga, sizeof ga) == 0);
    close(g);
    int d = nl_socket(0);
    add_policy(d, 1);
    nothing_queued(d);
    close(d);
    /* flags are the new socket's own */
    int f = nl_socket(SOCK_NONBLOCK | SOCK_CLOEXEC);
    CHECK((fcntl(f, F_GETFL) & O_NONBLOCK) && (fcntl(f, F_GETFD) & FD_CLOEXEC));
    ask_ack(f, 54);
    CHECK(poll(&(struct pollfd){ f, POLLIN, 0 }, 1, 5000) == 1);
    answer_ack(f, 54);
    close(f);
    int h = nl_socket(0);
    CHECK(!(fcntl(h, F_GETFL) & O_NONBLOCK) && !(fcntl(h, F_GETFD) & FD_CLOEXEC));
    ask_ack(h, 55); answer_ack(h, 55);
    /* made non-blocking after socket(), by fcntl and by ioctl: the next socket is not */
    CHECK(fcntl(h, F_SETFL, O_NONBLOCK) == 0);
    close(h);
    int h2 = nl_socket(0);
    CHECK(!(fcntl(h2, F_GETFL) & O_NONBLOCK));
    int on = 1;
    CHECK(ioctl(h2, FIONBIO, &on) == 0 && (fcntl(h2, F_GETFL) & O_NONBLOCK));
    ask_ack(h2, 60);
    CHECK(poll(&(struct pollfd){ h2, POLLIN, 0 }, 1, 5000) == 1);
    answer_ack(h2, 60);
    close(h2);
    int h3 = nl_socket(0);
    CHECK(!(fcntl(h3, F_GETFL) & O_NONBLOCK));
    ask_ack(h3, 61); answer_ack(h3, 61);
    close(h3);
    /* the RELEASE of a kept connection waits for the next socket on it (docs/protocol.md):
     * two closed sockets, the first holding this process's id; the next socket takes the
     * second's connection, and its autobind still gets the id, the first having let go */
    int p1 = nl_socket(0);
    ask_ack(p1, 62); answer_ack(p1, 62);
    CHECK(portid(p1) == (unsigned)getpid());
    int p2 = nl_socket(0);
    ask_ack(p2, 63); answer_ack(p2, 63);
    CHECK(portid(p2) != (unsigned)getpid());
    close(p1);
    close(p2);
    int p3 = nl_socket(0);
    ask_ack(p3, 64); answer_ack(p3, 64);
    CHECK(portid(p3) == (unsigned)getpid());
    /* a reused socket closed before it said anything: its predecessor's RELEASE still
     * reaches the server with the socket after it */
    close(p3);
    int p4 = nl_socket(0);
    close(p4);
    int p5 = nl_socket(0);
    ask_ack(p5, 65); answer_ack(p5, 65);
    CHECK(portid(p5) == (unsigned)getpid());
    nothing_queued(p5);
    close(p5);
    /* the program closes every fd above 2 (as daemons do): the next socket still works */
    CHECK(syscall(SYS_close_range, 3, ~0U, 0) == 0);
    int e = nl_socket(0);
    ask_ack(e, 56); answer_ack(e, 56);
    close(e);
    /* a forked child does not take its parent's kept connection */
    int p0 = nl_socket(0);
    ask_ack(p0, 57); answer_ack(p0, 57);
    close(p0);
    pid_t ch = fork();
    CHECK(ch >= 0);
    if (ch == 0) {
        int cs = nl_socket(0);
        ask_ack(cs, 58); answer_ack(cs, 58);
        CHECK(portid(cs) == (unsigned)getpid());
        _exit(0);
    }
    int st;
    CHECK(waitpid(ch, &st, 0) == ch && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    int q = nl_socket(0);
    ask_ack(q, 59); answer_ack(q, 59);
    close(q);
    printf("reuse ok\n");
    return 0;
}

/* A kept connection stays open in the shim (above fd 512) while a socket reuses it: when that
 * socket ends without being kept (it joined a group; dup2 put another file on its fd), the
 * connection must end with it, or the server would keep its port id: the next socket's
 * autobind then gets the process's id again. The numbers the program sees are Linux's. */
static int t_keepfd(void)
{
    struct sockaddr_nl ga = { .nl_family = AF_NETLINK, .nl_groups = XFRMGRP_POLICY };
    int a = nl_socket(0);
    ask_ack(a, 80); answer_ack(a, 80);
    close(a);                                   /* kept */
    int b = nl_socket(0);                       /* takes it again */
    CHECK(b == a);
    CHECK(bind(b, (struct sockaddr *)&ga, sizeof ga) == 0);
    ask_ack(b, 81); answer_ack(b, 81);
    CHECK(portid(b) == (unsigned)getpid());
    close(b);                                   /* in a group: not kept */
    int n = open("/dev/null", O_RDONLY);
    CHECK(n == a);
    close(n);
    int c = nl_socket(0);
    ask_ack(c, 82); answer_ack(c, 82);
    CHECK(portid(c) == (unsigned)getpid());     /* b's connection ended: its id is free */
    close(c);                                   /* kept */
    int d = nl_socket(0);                       /* takes it again */
    ask_ack(d, 83); answer_ack(d, 83);
    CHECK(portid(d) == (unsigned)getpid());
    int nul = open("/dev/null", O_RDONLY);
    CHECK(dup2(nul, d) == d);                   /* the socket's last fd: it ends */
    close(nul);
    close(d);
    int e = nl_socket(0);
    ask_ack(e, 84); answer_ack(e, 84);
    CHECK(portid(e) == (unsigned)getpid());
    close(e);
    printf("keepfd ok\n");
    return 0;
}

/* The server goes away under a live socket: calls fail with ECONNREFUSED, and the fd never
 * polls ready again (a hung-up connection would keep an event loop spinning) */
static int t_gone(void)
{
    int fd = nl_socket(0);
    ask(fd, 70); answer(fd, 70, 0);
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd }, out[2];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0);
    printf("ready\n");
    char line[16];
    CHECK(fgets(line, sizeof line, stdin) != NULL);      /* the server is stopped now */
    char b[64];
    errno = 0;
    CHECK(recv(fd, b, sizeof b, 0) == -1 && errno == ECONNREFUSED);
    CHECK(epoll_wait(ep, out, 2, 300) == 0);
    struct pollfd p = { fd, POLLIN, 0 };
    CHECK(poll(&p, 1, 100) == 0);
    errno = 0;
    struct { struct nlmsghdr h; unsigned flags; } m = {
        { sizeof m, XFRM_MSG_GETSADINFO, NLM_F_REQUEST, 71, 0 }, 0xffffffff };
    CHECK(send(fd, &m, sizeof m, 0) == -1 && errno == ECONNREFUSED);
    CHECK(close(fd) == 0);
    printf("gone ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && !strcmp(argv[1], "nonblock")) return t_nonblock();
    if (argc > 1 && !strcmp(argv[1], "epoll")) return t_epoll();
    if (argc > 1 && !strcmp(argv[1], "fork")) return t_fork();
    if (argc > 1 && !strcmp(argv[1], "dup")) return t_dup();
    if (argc > 1 && !strcmp(argv[1], "reuse")) return t_reuse();
    if (argc > 1 && !strcmp(argv[1], "keepfd")) return t_keepfd();
    if (argc > 1 && !strcmp(argv[1], "gone")) return t_gone();
    if (argc > 1 && !strcmp(argv[1], "cloexec")) return t_cloexec(argv[0]);
    if (argc > 5 && !strcmp(argv[1], "after-exec"))
        return t_after_exec(atoi(argv[2]), atoi(argv[3]), (unsigned)strtoul(argv[4], NULL, 10),
                            atoi(argv[5]));
    return 2;
}
"""


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    cc = shutil.which("gcc") or shutil.which("cc")
    require(cc, "needs a C compiler")
    d = tmp_path_factory.mktemp("shimprog")
    src = d / "nlprog.c"
    src.write_text(PROG.replace("#include <unistd.h>", "#include <unistd.h>\n#include <net/if.h>"))
    exe = d / "nlprog"
    subprocess.run([cc, "-O1", "-Wall", "-o", str(exe), str(src)], check=True)
    return str(exe)


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(XFRMD + ["run", "--topology", "bare", "--"] + argv,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("case", ["nonblock", "epoll", "fork", "cloexec", "dup", "reuse", "keepfd"])
def test_c_program(prog, case):
    p = run([prog, case])
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().endswith(f"{case} ok"), p.stdout + p.stderr


PY = textwrap.dedent("""
    import errno, os, select, socket, struct
    def ask(s, seq):
        s.send(struct.pack("=IHHIII", 20, 0x23, 1, seq, 0, 0xffffffff))  # GETSADINFO
    def answer(s, seq):
        d, (pid, groups) = s.recvfrom(65536)
        ln, t, fl, sq, p = struct.unpack_from("=IHHII", d)
        assert (t, sq, pid) == (0x22, seq, 0), (t, sq, pid)  # XFRM_MSG_NEWSADINFO
        assert p == s.getsockname()[0]
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_XFRM)
    s.bind((0, 0))
    assert s.getsockname() == (os.getpid(), 0)
    ask(s, 1); answer(s, 1)
    if DUP:
        d = s.dup()                              # fcntl(F_DUPFD_CLOEXEC)
        assert d.getsockname() == s.getsockname()
        ask(d, 2); answer(s, 2)
    s.setblocking(False)
    try:
        s.recv(100)
        raise SystemExit("expected EAGAIN")
    except BlockingIOError:
        pass
    ask(s, 3)
    assert select.select([s], [], [], 5)[0] == [s]
    answer(s, 3)
    s.setsockopt(270, 11, 1)                     # NETLINK_EXT_ACK
    assert s.getsockopt(270, 11) == 1
    s.close()
    if DUP:
        ask(d, 4); answer(d, 4)
    print("python ok")
""")



AUTOBIND_CHILD = textwrap.dedent("""
    import os, socket, struct, sys
    print(os.getpid(), flush=True)
    sys.stdin.readline()
    r = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    r.bind((0, 0))
    assert r.getsockname()[0] == os.getpid(), r.getsockname()
    x = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_XFRM)
    x.bind((0, 0))
    port = x.getsockname()[0]
    assert (port == os.getpid()) == (not HELD), (port, os.getpid())
    x.send(struct.pack("=IHHIII", 20, 0x23, 1, 7, 0, 0xffffffff))   # GETSADINFO
    d = x.recv(65536)
    assert struct.unpack_from("=IHHII", d)[1:] == (0x22, 0, 7, port), d[:20]
    print("child ok", flush=True)
""")

AUTOBIND = textwrap.dedent("""
    import socket, subprocess, sys
    c = subprocess.Popen([sys.executable, "-c", f"HELD = {HELD}\\n" + CHILD],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = int(c.stdout.readline())
    if HELD:     # another process holds the child's id in NETLINK_XFRM (an explicit bind)
        h = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_XFRM)
        h.bind((pid, 0))
    c.stdin.write("go\\n")
    c.stdin.flush()
    out = c.stdout.read()
    assert c.wait() == 0 and out.strip() == "child ok", out
    print("autobind ok")
""")


@pytest.mark.parametrize("held", [False, True])
def test_second_protocol_autobind(held):
    """`ip`'s NETLINK_XFRM socket after its NETLINK_ROUTE one: the shim predicts its port id
    from the first BIND_REPLY (docs/protocol.md) only while no socket holds the process's id
    in that protocol's table; when one does, the socket gets what netlink_autobind gives,
    exactly, and the answer is addressed to it (no "was taken" correction on stderr)."""
    code = f"HELD = {held}\nCHILD = {AUTOBIND_CHILD!r}\n" + AUTOBIND
    p = run([sys.executable, "-c", code])
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == "autobind ok", p.stdout + p.stderr
    assert "was taken" not in p.stderr


@pytest.mark.parametrize("dup", [False, True])
def test_python_socket_module(prog, dup):
    p = run([sys.executable, "-c", f"DUP = {dup}\n" + PY])
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == "python ok"


def test_ip_batch_uses_one_connection(tmp_path):
    """`ip -batch` opens a socket per line; the shim reuses one connection for all of them
    (socket+connect once; without reuse this run makes seven), which is what makes the batch benchmark's figure."""
    require(shutil.which("strace"), "needs strace")
    script = tmp_path / "b.ip"
    script.write_text("".join(f"xfrm policy add src 10.0.{i}.0/24 dst 198.51.100.0/24 dir out\n"
                              for i in range(5)) + "xfrm policy count\n")
    p = run(["strace", "-f", "-qq", "-e", "trace=connect,sendto", "-o", str(tmp_path / "tr"),
             "ip", "-batch", str(script)])
    assert p.returncode == 0, p.stderr
    assert "SPD IN  0 OUT 5 FWD 0" in p.stdout
    trace = (tmp_path / "tr").read_text().splitlines()
    connects = [ln for ln in trace if "xfrmd.sock" in ln]
    # ip's own NETLINK_ROUTE handle (open for the whole batch) and one for the six lines
    assert len(connects) == 2, connects
    # one write per line: a closed socket's RELEASE goes with the next line's request
    # (BATCH), not on its own (a server wake-up per line for nothing)
    releases = [ln for ln in trace if 'sendto(' in ln and '"\\0\\0\\0\\0\\1\\0\\t\\0", 8' in ln]
    assert not releases, releases


def test_server_gone_under_a_live_socket(prog):
    """`xfrmd run` stops its server only after the command, but a server can die under a
    daemon: the daemon's calls fail with ECONNREFUSED (and the shim says so on stderr)
    instead of its event loop spinning on a hung-up connection."""
    from xfrmd import shim
    from xfrmd.embedded import make_kernel, running_server
    with running_server(make_kernel("bare")) as srv:
        env = dict(os.environ, XFRMD_SOCKET=srv.path, LD_PRELOAD=shim.path())
        p = subprocess.Popen([prog, "gone"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
        assert p.stdout.readline() == "ready\n"
    out, err = p.communicate("go\n", timeout=30)
    assert p.returncode == 0, out + err
    assert out == "gone ok\n"
    assert "cannot reach the xfrmd server" in err and err.count("\n") == 1, err
