/*
 * getOriginalDst(fd) -> { address, port } | null
 *
 * The destination a TCP connection had before an iptables REDIRECT/DNAT rewrote it, read from conntrack
 * with getsockopt(SO_ORIGINAL_DST) (IPv4, <linux/netfilter_ipv4.h>) or getsockopt(IP6T_SO_ORIGINAL_DST)
 * (IPv6, <linux/netfilter_ipv6/ip6_tables.h>), as Envoy's original_dst listener filter does
 * (source/common/network/utility.cpp getOriginalDst). Node.js exposes neither, hence this addon.
 *
 * Returns null when the kernel has no original destination for the socket (ENOENT: not tracked by
 * conntrack, e.g. no NAT table rule ever saw it) or the socket is not IPv4/IPv6 TCP (ENOPROTOOPT, EOPNOTSUPP).
 * Throws an Error with `code` = the errno name for anything else (EBADF, ENOTSOCK, ...).
 *
 * Node-API only (ABI-stable): built against any Node's headers, it loads in every later Node.
 */
#include <node_api.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/netfilter_ipv4.h>

#ifndef IP6T_SO_ORIGINAL_DST
/* <linux/netfilter_ipv6/ip6_tables.h>: same value as SO_ORIGINAL_DST, on level SOL_IPV6. */
#define IP6T_SO_ORIGINAL_DST 80
#endif
#ifndef SOL_IPV6
#define SOL_IPV6 41
#endif

static napi_value throw_errno(napi_env env, const char *what, int err) {
  const char *code = "EUNKNOWN";
  switch (err) {
    case EBADF: code = "EBADF"; break;
    case ENOTSOCK: code = "ENOTSOCK"; break;
    case EINVAL: code = "EINVAL"; break;
    case EFAULT: code = "EFAULT"; break;
    case EPERM: code = "EPERM"; break;
    default: break;
  }
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, code, msg);
  return NULL;
}

static napi_value make_result(napi_env env, const char *address, unsigned port) {
  napi_value obj, addr, p;
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, address, NAPI_AUTO_LENGTH, &addr) != napi_ok) return NULL;
  if (napi_create_uint32(env, port, &p) != napi_ok) return NULL;
  if (napi_set_named_property(env, obj, "address", addr) != napi_ok) return NULL;
  if (napi_set_named_property(env, obj, "port", p) != napi_ok) return NULL;
  return obj;
}

static napi_value get_original_dst(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int32_t fd = -1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "getOriginalDst(fd): fd must be a non-negative integer");
    return NULL;
  }
  napi_value null_value;
  napi_get_null(env, &null_value);

  /* The socket's own family decides which option to ask for (as Envoy: by the local address's version). */
  struct sockaddr_storage local;
  socklen_t len = sizeof local;
  memset(&local, 0, sizeof local);
  if (getsockname(fd, (struct sockaddr *)&local, &len) != 0) return throw_errno(env, "getsockname", errno);

  char text[INET6_ADDRSTRLEN];
  if (local.ss_family == AF_INET) {
    struct sockaddr_in dst;
    socklen_t dlen = sizeof dst;
    memset(&dst, 0, sizeof dst);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &dlen) != 0) {
      int err = errno;
      if (err == ENOENT || err == ENOPROTOOPT || err == EOPNOTSUPP) return null_value;
      return throw_errno(env, "getsockopt(SO_ORIGINAL_DST)", err);
    }
    if (inet_ntop(AF_INET, &dst.sin_addr, text, sizeof text) == NULL) return throw_errno(env, "inet_ntop", errno);
    return make_result(env, text, ntohs(dst.sin_port));
  }
  if (local.ss_family == AF_INET6) {
    struct sockaddr_in6 dst;
    socklen_t dlen = sizeof dst;
    memset(&dst, 0, sizeof dst);
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &dlen) != 0) {
      int err = errno;
      if (err == ENOENT || err == ENOPROTOOPT || err == EOPNOTSUPP) return null_value;
      return throw_errno(env, "getsockopt(IP6T_SO_ORIGINAL_DST)", err);
    }
    if (inet_ntop(AF_INET6, &dst.sin6_addr, text, sizeof text) == NULL) return throw_errno(env, "inet_ntop", errno);
    return make_result(env, text, ntohs(dst.sin6_port));
  }
  /* Unix domain and other sockets never have an original destination. */
  return null_value;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value fn;
  if (napi_create_function(env, "getOriginalDst", NAPI_AUTO_LENGTH, get_original_dst, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "getOriginalDst", fn) != napi_ok) return NULL;
  return exports;
}
