#include "control/core/netlink.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>

namespace dpsw {

namespace {
[[noreturn]] void fail_errno(const std::string& what) { throw NetlinkError(what + ": " + std::strerror(errno)); }
[[noreturn]] void fail_nl(const std::string& what, int err) { throw NetlinkError(what + ": " + nl_geterror(err)); }

struct LinkPtr {
  rtnl_link* p = nullptr;
  ~LinkPtr() {
    if (p) rtnl_link_put(p);
  }
};
struct AddrPtr {
  nl_addr* p = nullptr;
  ~AddrPtr() {
    if (p) nl_addr_put(p);
  }
};
nl_addr* make_ipv4(uint32_t ip, uint8_t len) {
  uint32_t be = htonl(ip);
  nl_addr* a = nl_addr_build(AF_INET, &be, 4);
  if (a) nl_addr_set_prefixlen(a, len);
  return a;
}
}  // namespace

void in_netns(int ns_fd, const std::function<void()>& fn) {
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) fail_errno("open /proc/thread-self/ns/net");
  if (setns(ns_fd, CLONE_NEWNET) < 0) {
    int e = errno;
    close(self);
    errno = e;
    fail_errno("setns");
  }
  std::exception_ptr ex;
  try {
    fn();
  } catch (...) {
    ex = std::current_exception();
  }
  if (setns(self, CLONE_NEWNET) < 0) std::abort();  // cannot continue in the wrong namespace
  close(self);
  if (ex) std::rethrow_exception(ex);
}

namespace netns {

void create(const std::string& name) {
  mkdir(kRunDir, 0755);
  // Like iproute2: make the directory a shared mount so the bind mounts below
  // are visible in every mount namespace.
  if (mount("", kRunDir, "none", MS_SHARED | MS_REC, nullptr) != 0 && errno == EINVAL) {
    mount(kRunDir, kRunDir, "none", MS_BIND | MS_REC, nullptr);
    mount("", kRunDir, "none", MS_SHARED | MS_REC, nullptr);
  }
  std::string path = std::string(kRunDir) + "/" + name;
  int fd = open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) fail_errno("create namespace file " + path);
  close(fd);
  int err = 0;
  // unshare() moves only the calling thread, so do it on a throwaway thread.
  std::thread t([&] {
    if (unshare(CLONE_NEWNET) < 0 || mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) < 0)
      err = errno;
  });
  t.join();
  if (err) {
    unlink(path.c_str());
    errno = err;
    fail_errno("create network namespace " + name);
  }
}

void remove(const std::string& name) {
  std::string path = std::string(kRunDir) + "/" + name;
  umount2(path.c_str(), MNT_DETACH);
  unlink(path.c_str());
}

bool exists(const std::string& name) {
  struct stat st;
  return stat((std::string(kRunDir) + "/" + name).c_str(), &st) == 0;
}

int open_path(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_errno("open network namespace " + path);
  return fd;
}

}  // namespace netns

Rtnl::Rtnl(int ns_fd) {
  auto make = [&] {
    sk_ = nl_socket_alloc();
    if (!sk_) throw NetlinkError("nl_socket_alloc failed");
    if (int e = nl_connect(sk_, NETLINK_ROUTE)) {
      nl_socket_free(sk_);
      sk_ = nullptr;
      fail_nl("connect route netlink", e);
    }
  };
  // A netlink socket stays bound to the namespace it was created in.
  if (ns_fd >= 0) in_netns(ns_fd, make);
  else make();
}

Rtnl::~Rtnl() {
  if (sk_) nl_socket_free(sk_);
}

int Rtnl::ifindex(const std::string& name) {
  LinkPtr l;
  if (rtnl_link_get_kernel(sk_, 0, name.c_str(), &l.p) < 0) return 0;
  return rtnl_link_get_ifindex(l.p);
}

Mac Rtnl::link_mac(const std::string& name) {
  LinkPtr l;
  if (int e = rtnl_link_get_kernel(sk_, 0, name.c_str(), &l.p); e < 0) fail_nl("find link " + name, e);
  nl_addr* a = rtnl_link_get_addr(l.p);
  if (!a || nl_addr_get_len(a) != 6) throw NetlinkError(name + " has no Ethernet address");
  return mac_from_bytes(static_cast<const uint8_t*>(nl_addr_get_binary_addr(a)));
}

uint32_t Rtnl::link_mtu(const std::string& name) {
  LinkPtr l;
  if (int e = rtnl_link_get_kernel(sk_, 0, name.c_str(), &l.p); e < 0) fail_nl("find link " + name, e);
  return rtnl_link_get_mtu(l.p);
}

bool Rtnl::link_lower_up(const std::string& name) {
  LinkPtr l;
  if (rtnl_link_get_kernel(sk_, 0, name.c_str(), &l.p) < 0) return false;
  return rtnl_link_get_carrier(l.p) != 0;
}

std::string Rtnl::link_kind(const std::string& name) {
  LinkPtr l;
  if (int e = rtnl_link_get_kernel(sk_, 0, name.c_str(), &l.p); e < 0) fail_nl("find link " + name, e);
  const char* t = rtnl_link_get_type(l.p);
  return t ? t : "";
}

Rtnl::VethPeer Rtnl::veth_peer(const std::string& name) {
  LinkPtr l;
  if (int e = rtnl_link_get_kernel(sk_, 0, name.c_str(), &l.p); e < 0) fail_nl("find link " + name, e);
  VethPeer v;
  v.up = (rtnl_link_get_flags(l.p) & IFF_UP) != 0;
  int32_t nsid = -1;
  const int peer_index = rtnl_link_get_link(l.p);  // IFLA_LINK: the peer's index, in its namespace
  if (rtnl_link_get_link_netnsid(l.p, &nsid) < 0 || nsid < 0 || peer_index <= 0) return v;  // here (or dying)
  // libnl has no call for a link in another namespace: the request by hand.
  std::unique_ptr<nl_msg, decltype(&nlmsg_free)> m(nlmsg_alloc_simple(RTM_GETLINK, 0), nlmsg_free);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = peer_index;
  if (!m || nlmsg_append(m.get(), &ifi, sizeof ifi, NLMSG_ALIGNTO) < 0 || nla_put_s32(m.get(), IFLA_TARGET_NETNSID, nsid) < 0)
    throw NetlinkError("build a request for " + name + "'s peer");
  struct Out {
    VethPeer* v;
    bool got;
  } out{&v, false};
  std::unique_ptr<nl_cb, decltype(&nl_cb_put)> cb(nl_cb_alloc(NL_CB_DEFAULT), nl_cb_put);
  if (!cb) throw NetlinkError("nl_cb_alloc failed");
  nl_cb_set(
      cb.get(), NL_CB_VALID, NL_CB_CUSTOM,
      [](nl_msg* msg, void* arg) {
        auto* o = static_cast<Out*>(arg);
        nlattr* tb[IFLA_MAX + 1];
        if (nlmsg_parse(nlmsg_hdr(msg), sizeof(ifinfomsg), tb, IFLA_MAX, nullptr) < 0) return int(NL_SKIP);
        if (tb[IFLA_MTU]) o->v->mtu = nla_get_u32(tb[IFLA_MTU]);
        if (tb[IFLA_ADDRESS] && nla_len(tb[IFLA_ADDRESS]) == 6)
          o->v->mac = mac_from_bytes(static_cast<const uint8_t*>(nla_data(tb[IFLA_ADDRESS])));
        nlattr* x[IFLA_XDP_MAX + 1];
        if (tb[IFLA_XDP] && nla_parse_nested(x, IFLA_XDP_MAX, tb[IFLA_XDP], nullptr) == 0 && x[IFLA_XDP_ATTACHED])
          o->v->xdp = nla_get_u8(x[IFLA_XDP_ATTACHED]) != XDP_ATTACHED_NONE &&
                      nla_get_u8(x[IFLA_XDP_ATTACHED]) != XDP_ATTACHED_SKB;  // generic XDP runs on any receive path
        o->got = true;
        return int(NL_OK);
      },
      &out);
  if (int e = nl_send_auto(sk_, m.get()); e < 0) fail_nl("ask for " + name + "'s peer", e);
  if (int e = nl_recvmsgs(sk_, cb.get()); e < 0) fail_nl("read " + name + "'s peer", e);
  if (int e = nl_wait_for_ack(sk_); e < 0) fail_nl("read " + name + "'s peer (ack)", e);  // none left for the next request
  if (!out.got || !v.mtu || !v.mac) throw NetlinkError("no usable answer for " + name + "'s peer");
  v.elsewhere = true;
  return v;
}

void Rtnl::create_veth(const std::string& name, const std::string& alias, const std::string& peer_name, int peer_ns_fd,
                       Mac peer_mac, uint32_t mtu, uint32_t host_mtu) {
  rtnl_link* link = rtnl_link_veth_alloc();
  if (!link) throw NetlinkError("rtnl_link_veth_alloc failed");
  rtnl_link* peer = rtnl_link_veth_get_peer(link);
  rtnl_link_set_name(link, name.c_str());
  rtnl_link_set_mtu(link, host_mtu ? host_mtu : mtu);
  rtnl_link_set_name(peer, peer_name.c_str());
  rtnl_link_set_mtu(peer, mtu);
  uint8_t mb[6];
  mac_to_bytes(peer_mac, mb);
  AddrPtr ma{nl_addr_build(AF_LLC, mb, 6)};
  rtnl_link_set_addr(peer, ma.p);
  if (peer_ns_fd >= 0) rtnl_link_set_ns_fd(peer, peer_ns_fd);
  int e = rtnl_link_add(sk_, link, NLM_F_CREATE | NLM_F_EXCL);
  rtnl_link_put(peer);
  rtnl_link_veth_release(link);
  if (e < 0) fail_nl("create veth " + name + " <-> " + peer_name, e);
  // The kernel ignores IFLA_IFALIAS when it creates a link: set it on the
  // new link (and on its peer when that stays here too).
  set_alias(name, alias);
  if (peer_ns_fd < 0) set_alias(peer_name, alias);
}

void Rtnl::set_alias(const std::string& name, const std::string& alias) {
  LinkPtr cur, change;
  if (int e = rtnl_link_get_kernel(sk_, 0, name.c_str(), &cur.p); e < 0) fail_nl("find link " + name, e);
  change.p = rtnl_link_alloc();
  rtnl_link_set_ifalias(change.p, alias.c_str());
  if (int e = rtnl_link_change(sk_, cur.p, change.p, 0); e < 0) fail_nl("set alias of " + name, e);
}

void Rtnl::set_up(const std::string& name, uint32_t mtu) {
  LinkPtr cur, change;
  if (int e = rtnl_link_get_kernel(sk_, 0, name.c_str(), &cur.p); e < 0) fail_nl("find link " + name, e);
  change.p = rtnl_link_alloc();
  rtnl_link_set_flags(change.p, IFF_UP);
  if (mtu) rtnl_link_set_mtu(change.p, mtu);
  if (int e = rtnl_link_change(sk_, cur.p, change.p, 0); e < 0) fail_nl("bring up " + name, e);
}

void Rtnl::add_address(const std::string& name, uint32_t ip, uint8_t len) {
  int idx = ifindex(name);
  if (!idx) throw NetlinkError("add address: no link " + name);
  rtnl_addr* a = rtnl_addr_alloc();
  AddrPtr local{make_ipv4(ip, len)};
  rtnl_addr_set_ifindex(a, idx);
  rtnl_addr_set_local(a, local.p);
  if (len < 31) {
    AddrPtr bcast{make_ipv4(ip | (len ? ~uint32_t(0) >> len : ~uint32_t(0)), 32)};
    rtnl_addr_set_broadcast(a, bcast.p);
  }
  int e = rtnl_addr_add(sk_, a, 0);
  rtnl_addr_put(a);
  if (e < 0) fail_nl("add address to " + name, e);
}

void Rtnl::add_default_route(uint32_t gw) {
  rtnl_route* r = rtnl_route_alloc();
  AddrPtr dst{make_ipv4(0, 0)}, via{make_ipv4(gw, 32)};
  rtnl_route_set_family(r, AF_INET);
  rtnl_route_set_dst(r, dst.p);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  rtnl_route_nh_set_gateway(nh, via.p);
  rtnl_route_add_nexthop(r, nh);
  int e = rtnl_route_add(sk_, r, NLM_F_CREATE);
  rtnl_route_put(r);
  if (e < 0) fail_nl("add default route", e);
}

bool Rtnl::delete_link(const std::string& name) {
  LinkPtr l;
  if (rtnl_link_get_kernel(sk_, 0, name.c_str(), &l.p) < 0) return false;
  int e = rtnl_link_delete(sk_, l.p);
  if (e < 0 && e != -NLE_OBJ_NOTFOUND && e != -NLE_NODEV) fail_nl("delete link " + name, e);
  return true;
}

std::vector<std::string> Rtnl::links_with_alias_prefix(const std::string& prefix) {
  std::vector<std::string> out;
  nl_cache* cache = nullptr;
  if (rtnl_link_alloc_cache(sk_, AF_UNSPEC, &cache) < 0) return out;
  for (nl_object* o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
    auto* l = reinterpret_cast<rtnl_link*>(o);
    const char* alias = rtnl_link_get_ifalias(l);
    if (alias && std::string(alias).rfind(prefix, 0) == 0) out.push_back(rtnl_link_get_name(l));
  }
  nl_cache_free(cache);
  return out;
}

namespace {
// One SIOCETHTOOL request (ethtool_value) on ifname; returns v.data after the call.
uint32_t ethtool_value_ioctl(const std::string& ifname, uint32_t cmd, uint32_t data, const std::string& what) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_errno("socket");
  ethtool_value v{};
  v.cmd = cmd;
  v.data = data;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  ifr.ifr_data = reinterpret_cast<char*>(&v);
  int r = ioctl(fd, SIOCETHTOOL, &ifr);
  int e = errno;
  close(fd);
  if (r < 0) {
    errno = e;
    fail_errno("ethtool " + what + " " + ifname);
  }
  return v.data;
}
}  // namespace

void ethtool_set_tx_csum(const std::string& ifname, bool on) {
  ethtool_value_ioctl(ifname, ETHTOOL_STXCSUM, on ? 1 : 0, "tx checksum");
}

void ethtool_set_tx_vlan(const std::string& ifname, bool on) {
  uint32_t flags = ethtool_value_ioctl(ifname, ETHTOOL_GFLAGS, 0, "flags");
  flags = on ? flags | ETH_FLAG_TXVLAN : flags & ~uint32_t(ETH_FLAG_TXVLAN);
  ethtool_value_ioctl(ifname, ETHTOOL_SFLAGS, flags, "tx vlan offload");
}

void set_rps_cpus(const std::string& ifname, const std::vector<int>& cores) {
  // The sysfs format: 32-bit hex groups, most significant first, comma-separated.
  int top = 0;
  for (int c : cores) top = std::max(top, c);
  std::vector<uint32_t> words(size_t(top / 32 + 1), 0);
  for (int c : cores) words[size_t(c / 32)] |= 1u << (c % 32);
  std::string mask;
  for (size_t i = words.size(); i-- > 0;) {
    char buf[16];
    snprintf(buf, sizeof buf, "%s%08x", mask.empty() ? "" : ",", words[i]);
    mask += buf;
  }
  // /sys/class/net shows the network namespace sysfs was mounted in, not the
  // caller's (dpsw --netns): a thread of its own (it starts in the caller's
  // network namespace) mounts a fresh sysfs in a private mount namespace,
  // which goes away with the thread. MS_SLAVE first: nothing propagates out.
  std::string err;
  std::thread t([&] {
    try {
      if (unshare(CLONE_NEWNS) != 0) fail_errno("unshare(CLONE_NEWNS)");
      if (mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) fail_errno("mount --make-rslave /");
      // EBUSY: the sysfs on /sys is already this namespace's (the same one cannot be stacked).
      if (mount("sysfs", "/sys", "sysfs", 0, nullptr) != 0 && errno != EBUSY) fail_errno("mount sysfs");
      const std::string dir = "/sys/class/net/" + ifname + "/queues/";
      DIR* d = opendir(dir.c_str());
      if (!d) throw NetlinkError("cannot list the receive queues of " + ifname + ": " + strerror(errno));
      std::vector<std::string> queues;
      while (dirent* e = readdir(d))
        if (strncmp(e->d_name, "rx-", 3) == 0) queues.push_back(e->d_name);
      closedir(d);
      for (const auto& q : queues) {
        std::ofstream f(dir + q + "/rps_cpus");
        f << mask;
        f.close();
        if (!f) throw NetlinkError("cannot set RPS cores " + mask + " on " + ifname + " " + q);
      }
    } catch (const std::exception& e) {
      err = e.what();
    }
  });
  t.join();
  if (!err.empty()) throw NetlinkError(err);
}

std::string sysctl_read(const std::string& path) {
  std::ifstream f("/proc/sys/" + path);
  std::string v;
  if (!(f >> v)) throw NetlinkError("cannot read sysctl " + path);
  return v;
}

void sysctl_write(const std::string& path, const std::string& value) {
  std::ofstream f("/proc/sys/" + path);
  f << value;
  if (!f) throw NetlinkError("cannot write sysctl " + path);
}

}  // namespace dpsw
