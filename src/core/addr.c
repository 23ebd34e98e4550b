#include "core/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int core_addr_parse(const char *host, uint16_t port, struct sockaddr_storage *ret,
                    socklen_t *ret_len)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};

    if (!host)
        return -EINVAL;
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &sin.sin_addr) == 1) {
        memset(ret, 0, sizeof(*ret));
        memcpy(ret, &sin, sizeof(sin));
        *ret_len = sizeof(sin);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6.sin6_addr) == 1) {
        memset(ret, 0, sizeof(*ret));
        memcpy(ret, &sin6, sizeof(sin6));
        *ret_len = sizeof(sin6);
        return 0;
    }
    return -EINVAL;
}

bool core_addr_is_valid_host(const char *host)
{
    struct sockaddr_storage ss;
    socklen_t len;

    return core_addr_parse(host, 0, &ss, &len) == 0;
}

int core_hostport_parse(const char *text, char *ret_host, size_t host_len, uint16_t *ret_port,
                        struct core_err *err)
{
    const char *host, *colon, *end;
    size_t n;
    char *stop;
    long port;

    if (!text || !*text)
        return core_err_set(err, -EINVAL, NULL, "empty address: expected HOST:PORT");
    if (text[0] == '[') {
        end = strchr(text, ']');
        if (!end || end[1] != ':')
            return core_err_set(err, -EINVAL, NULL, "'%s': expected [IPV6]:PORT", text);
        host = text + 1;
        n = (size_t)(end - host);
        colon = end + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon || strchr(text, ':') != colon)
            return core_err_set(err, -EINVAL, NULL,
                                "'%s': expected HOST:PORT (IPv6 as [ADDR]:PORT)", text);
        host = text;
        n = (size_t)(colon - text);
    }
    if (n == 0 || n >= host_len)
        return core_err_set(err, -EINVAL, NULL, "'%s': bad host", text);
    errno = 0;
    port = strtol(colon + 1, &stop, 10);
    if (colon[1] == '\0' || *stop != '\0' || errno || port < 0 || port > 65535)
        return core_err_set(err, -EINVAL, NULL, "'%s': port must be 0-65535", text);
    memcpy(ret_host, host, n);
    ret_host[n] = '\0';
    if (!core_addr_is_valid_host(ret_host))
        return core_err_set(err, -EINVAL, NULL, "'%s': host must be a numeric IPv4 or IPv6 address",
                            text);
    *ret_port = (uint16_t)port;
    return 0;
}

char *core_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
    } else {
        snprintf(buf, len, "(family %d)", sa->sa_family);
    }
    return buf;
}

uint16_t core_addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

bool core_addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

        return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}
