#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/addr.h"
#include "core/net.h"

/* A bound socket of type on host, port 0, with flags; its address in *ret. */
static int bind_any(const char *host, int type, unsigned flags, struct sockaddr_storage *ret,
                    struct core_err *err)
{
    struct sockaddr_storage ss;
    socklen_t len;

    assert_int_equal(core_addr_parse(host, 0, &ss, &len), 0);
    return core_net_bind(&ss, len, type, flags, 16, ret, err);
}

/* A TCP connection from a new socket to host:port, blocking. */
static int connect_to(const char *host, uint16_t port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;

    assert_int_equal(core_addr_parse(host, port, &ss, &len), 0);
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&ss, len), 0);
    return fd;
}

static int int_option(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);

    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

static void test_net_bind_tcp_port0_listens_on_kernel_port(void **state)
{
    struct sockaddr_storage bound;
    struct core_err err = {0};
    int fd, c, a;

    (void)state;
    fd = bind_any("127.0.0.1", SOCK_STREAM, 0, &bound, &err);
    assert_true(fd >= 0);
    assert_int_equal(bound.ss_family, AF_INET);
    assert_int_not_equal(core_addr_port((struct sockaddr *)&bound), 0);
    assert_int_equal(int_option(fd, SOL_SOCKET, SO_ACCEPTCONN), 1);
    assert_int_equal(int_option(fd, SOL_SOCKET, SO_REUSEADDR), 1);
    assert_int_equal(int_option(fd, SOL_SOCKET, SO_REUSEPORT), 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_false(fcntl(fd, F_GETFL) & O_NONBLOCK);

    c = connect_to("127.0.0.1", core_addr_port((struct sockaddr *)&bound));
    a = accept(fd, NULL, NULL);
    assert_true(a >= 0);
    assert_int_equal(send(c, "x", 1, MSG_NOSIGNAL), 1);
    {
        char b = 0;

        assert_int_equal(recv(a, &b, 1, 0), 1);
        assert_int_equal(b, 'x');
    }
    close(a);
    close(c);
    close(fd);
}

/* A fixed port is reported as asked, for IPv4 and the dual-stack IPv6 any address alike: the
 * same as the kernel's getsockname() of the socket. */
static void test_net_bind_fixed_port_reports_what_the_kernel_bound(void **state)
{
    static const char *const hosts[] = {"127.0.0.1", "::"};

    (void)state;
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        struct sockaddr_storage first, ss, bound, kernel;
        socklen_t len, klen = sizeof(kernel);
        struct core_err err = {0};
        uint16_t port;
        int fd;

        fd = bind_any(hosts[i], SOCK_STREAM, 0, &first, &err);
        assert_true(fd >= 0);
        port = core_addr_port((struct sockaddr *)&first);
        close(fd);
        assert_int_equal(core_addr_parse(hosts[i], port, &ss, &len), 0);
        memset(&bound, 0xa5, sizeof(bound));
        fd = core_net_bind(&ss, len, SOCK_STREAM, 0, 16, &bound, &err);
        assert_true(fd >= 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&kernel, &klen), 0);
        assert_int_equal(klen, len);
        assert_memory_equal(&bound, &kernel, klen);
        assert_int_equal(core_addr_port((struct sockaddr *)&bound), port);
        close(fd);
    }
}

static void test_net_bind_flags_set_nonblock_and_reuseport(void **state)
{
    struct sockaddr_storage bound;
    int fd, sibling;

    (void)state;
    fd = bind_any("127.0.0.1", SOCK_STREAM, CORE_NET_NONBLOCK | CORE_NET_REUSEPORT, &bound, NULL);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_int_equal(int_option(fd, SOL_SOCKET, SO_REUSEPORT), 1);
    /* A second socket with SO_REUSEPORT binds the same address, as the event model's loops do. */
    sibling = core_net_bind_sibling(fd, CORE_NET_NONBLOCK | CORE_NET_REUSEPORT, 16, NULL);
    assert_true(sibling >= 0);
    assert_int_equal(int_option(sibling, SOL_SOCKET, SO_ACCEPTCONN), 1);
    assert_true(fcntl(sibling, F_GETFL) & O_NONBLOCK);
    {
        struct sockaddr_storage got;
        socklen_t len = sizeof(got);

        assert_int_equal(getsockname(sibling, (struct sockaddr *)&got, &len), 0);
        assert_int_equal(core_addr_port((struct sockaddr *)&got),
                         core_addr_port((struct sockaddr *)&bound));
    }
    close(sibling);
    close(fd);
}

static void test_net_bind_without_reuseport_no_sibling(void **state)
{
    struct sockaddr_storage bound;
    struct core_err err = {0};
    int fd;

    (void)state;
    fd = bind_any("127.0.0.1", SOCK_STREAM, 0, &bound, NULL);
    assert_true(fd >= 0);
    assert_int_equal(core_net_bind_sibling(fd, CORE_NET_REUSEPORT, 16, &err), -EADDRINUSE);
    assert_non_null(strstr(err.msg, "bind 127.0.0.1:"));
    close(fd);
}

static void test_net_bind_tcp_taken_port_says_where(void **state)
{
    struct sockaddr_storage bound;
    struct core_err err = {0};
    char want[128], where[CORE_ADDR_STRLEN];
    int fd;

    (void)state;
    fd = bind_any("127.0.0.1", SOCK_STREAM, 0, &bound, NULL);
    assert_true(fd >= 0);
    assert_int_equal(
        core_net_bind(&bound, sizeof(struct sockaddr_in), SOCK_STREAM, 0, 16, NULL, &err),
        -EADDRINUSE);
    core_addr_format((struct sockaddr *)&bound, where, sizeof(where));
    snprintf(want, sizeof(want), "bind %s/tcp: %s", where, strerror(EADDRINUSE));
    assert_string_equal(err.msg, want);
    assert_string_equal(err.field, "");
    close(fd);
}

static void test_net_bind_udp_no_reuseaddr_port_not_shared(void **state)
{
    struct sockaddr_storage bound;
    struct core_err err = {0};
    char want[128], where[CORE_ADDR_STRLEN];
    int fd;

    (void)state;
    fd = bind_any("127.0.0.1", SOCK_DGRAM, 0, &bound, NULL);
    assert_true(fd >= 0);
    assert_int_equal(int_option(fd, SOL_SOCKET, SO_TYPE), SOCK_DGRAM);
    assert_int_equal(int_option(fd, SOL_SOCKET, SO_REUSEADDR), 0);
    assert_int_equal(
        core_net_bind(&bound, sizeof(struct sockaddr_in), SOCK_DGRAM, 0, 16, NULL, &err),
        -EADDRINUSE);
    core_addr_format((struct sockaddr *)&bound, where, sizeof(where));
    snprintf(want, sizeof(want), "bind %s/udp: %s", where, strerror(EADDRINUSE));
    assert_string_equal(err.msg, want);
    close(fd);
}

static void test_net_bind_v6_any_serves_ipv4(void **state)
{
    struct sockaddr_storage bound;
    int fd, c, a;

    (void)state;
    fd = bind_any("::", SOCK_STREAM, 0, &bound, NULL);
    assert_true(fd >= 0);
    assert_int_equal(bound.ss_family, AF_INET6);
    assert_int_equal(int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY), 0);
    c = connect_to("127.0.0.1", core_addr_port((struct sockaddr *)&bound));
    a = accept(fd, NULL, NULL);
    assert_true(a >= 0);
    close(a);
    close(c);
    close(fd);
}

/* ---- Unix sockets ---- */

struct tmp {
    char dir[64];
    char path[128];
};

static int tmp_setup(void **state)
{
    struct tmp *t = calloc(1, sizeof(*t));

    if (!t)
        return -1;
    snprintf(t->dir, sizeof(t->dir), "/tmp/test_net.XXXXXX");
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    snprintf(t->path, sizeof(t->path), "%s/api.sock", t->dir);
    *state = t;
    return 0;
}

static int tmp_teardown(void **state)
{
    struct tmp *t = *state;

    (void)unlink(t->path);
    (void)rmdir(t->dir);
    free(t);
    return 0;
}

static int unix_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int r;

    assert_true(fd >= 0);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    r = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
    close(fd);
    return r;
}

static void test_net_unix_listen_mode_before_clients(void **state)
{
    struct tmp *t = *state;
    struct stat st, now;
    bool replaced = true;
    int fd;

    fd = core_net_unix_listen(t->path, 0640, CORE_NET_NONBLOCK, 16, &st, &replaced, NULL);
    assert_true(fd >= 0);
    assert_false(replaced);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(lstat(t->path, &now), 0);
    assert_true(S_ISSOCK(now.st_mode));
    assert_int_equal(now.st_mode & 0777, 0640);
    assert_int_equal(now.st_ino, st.st_ino);
    assert_int_equal(now.st_dev, st.st_dev);
    assert_int_equal(unix_connect(t->path), 0);
    close(fd);
}

static void test_net_unix_listen_stale_file_replaced(void **state)
{
    struct tmp *t = *state;
    struct stat st;
    bool replaced = false;
    int fd;

    /* A socket file nobody listens on, as a killed daemon leaves it. */
    fd = core_net_unix_listen(t->path, 0600, 0, 16, &st, NULL, NULL);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(unix_connect(t->path), -ECONNREFUSED);

    fd = core_net_unix_listen(t->path, 0600, 0, 16, &st, &replaced, NULL);
    assert_true(fd >= 0);
    assert_true(replaced);
    assert_int_equal(unix_connect(t->path), 0);
    close(fd);
}

static void test_net_unix_listen_in_use_left_alone(void **state)
{
    struct tmp *t = *state;
    struct core_err err = {0};
    struct stat st, st2;
    int fd;

    fd = core_net_unix_listen(t->path, 0600, 0, 16, &st, NULL, NULL);
    assert_true(fd >= 0);
    assert_int_equal(core_net_unix_listen(t->path, 0600, 0, 16, &st2, NULL, &err), -EADDRINUSE);
    assert_non_null(strstr(err.msg, "is in use by another server"));
    /* The first server's file is kept and still answers. */
    assert_int_equal(lstat(t->path, &st2), 0);
    assert_int_equal(st2.st_ino, st.st_ino);
    assert_int_equal(unix_connect(t->path), 0);
    close(fd);
}

static void test_net_unix_listen_not_a_socket_kept(void **state)
{
    struct tmp *t = *state;
    struct core_err err = {0};
    struct stat st;
    char buf[16] = {0};
    FILE *f = fopen(t->path, "w");

    assert_non_null(f);
    fputs("keep me", f);
    fclose(f);
    assert_int_equal(core_net_unix_listen(t->path, 0600, 0, 16, &st, NULL, &err), -EEXIST);
    assert_non_null(strstr(err.msg, "exists and is not a socket"));
    f = fopen(t->path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    assert_string_equal(buf, "keep me");
}

static void test_net_unix_listen_bad_path_enametoolong(void **state)
{
    char longer[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
    struct core_err err = {0};
    struct stat st;

    (void)state;
    memset(longer, 'a', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    assert_int_equal(core_net_unix_listen("", 0600, 0, 16, &st, NULL, &err), -ENAMETOOLONG);
    assert_int_equal(core_net_unix_listen(longer, 0600, 0, 16, &st, NULL, &err), -ENAMETOOLONG);
    assert_non_null(strstr(err.msg, "a Unix socket path is 1 to"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_net_bind_tcp_port0_listens_on_kernel_port),
        cmocka_unit_test(test_net_bind_fixed_port_reports_what_the_kernel_bound),
        cmocka_unit_test(test_net_bind_flags_set_nonblock_and_reuseport),
        cmocka_unit_test(test_net_bind_without_reuseport_no_sibling),
        cmocka_unit_test(test_net_bind_tcp_taken_port_says_where),
        cmocka_unit_test(test_net_bind_udp_no_reuseaddr_port_not_shared),
        cmocka_unit_test(test_net_bind_v6_any_serves_ipv4),
        cmocka_unit_test_setup_teardown(test_net_unix_listen_mode_before_clients, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_net_unix_listen_stale_file_replaced, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_net_unix_listen_in_use_left_alone, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_net_unix_listen_not_a_socket_kept, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test(test_net_unix_listen_bad_path_enametoolong),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
