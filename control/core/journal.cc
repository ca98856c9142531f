#include "control/core/journal.h"

#include <bpf/libbpf.h>
#include <net/if.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>

#include "control/core/netlink.h"

namespace dpsw {

namespace {
// "dev:ino:ctime" of a socket file ("" if none): inode numbers are reused
// at once after an unlink, the change time (ns) tells a new file apart.
std::string socket_identity(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return "";
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" + std::to_string(st.st_ctim.tv_sec) + "." +
         std::to_string(st.st_ctim.tv_nsec);
}
}  // namespace

Journal::Journal(std::string dir, std::string instance)
    : dir_(std::move(dir)), instance_(std::move(instance)), path_(dir_ + "/" + instance_ + ".state") {
  mkdir(dir_.c_str(), 0755);
  std::string lock = dir_ + "/" + instance_ + ".lock";
  lock_fd_ = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) throw std::runtime_error("cannot open " + lock);
  if (flock(lock_fd_, LOCK_EX | LOCK_NB) < 0) {
    close(lock_fd_);
    throw std::runtime_error("another dpsw instance named '" + instance_ + "' is running (" + lock + " is locked)");
  }
}

Journal::~Journal() {
  if (f_) fclose(f_);
  if (lock_fd_ >= 0) close(lock_fd_);
}

namespace {
bool tc_remove(const std::string& ifname, bool qdisc) {
  const int ifindex = int(if_nametoindex(ifname.c_str()));
  if (!ifindex) return false;
  bpf_tc_hook h{};
  h.sz = sizeof h;
  h.ifindex = ifindex;
  h.attach_point = qdisc ? bpf_tc_attach_point(BPF_TC_INGRESS | BPF_TC_EGRESS) : BPF_TC_INGRESS;
  if (qdisc) return bpf_tc_hook_destroy(&h) == 0;
  bpf_tc_opts o{};
  o.sz = sizeof o;
  o.handle = 1;  // the fast tier's one filter (dataplane/fast/fast_tier.cc)
  o.priority = 1;
  return bpf_tc_detach(&h, &o) == 0;
}
}  // namespace

int Journal::recover() {
  int removed = 0;
  Rtnl rt;
  std::ifstream in(path_);
  std::string kind, name;
  while (in >> kind >> name) {
    if (kind == "link" && rt.delete_link(name)) removed++;
    // Our TC filter on an interface that is not ours (the uplink), then the
    // clsact qdisc if we had made it (recorded after the filter).
    if ((kind == "tc-filter" || kind == "tc-qdisc") && tc_remove(name, kind == "tc-qdisc")) removed++;
    // A vhost-user server socket is removed only while it is still the
    // file dpsw created (same identity): an application may serve that path now.
    if (kind == "sockid") {
      auto colon = name.find(':', name.find(':', name.find(':') + 1) + 1);  // after "dev:ino:ctime"
      if (colon == std::string::npos) continue;
      const std::string path = name.substr(colon + 1);
      if (socket_identity(path) == name.substr(0, colon) && unlink(path.c_str()) == 0) removed++;
    }
    if (kind == "netns" && netns::exists(name)) {
      netns::remove(name);
      removed++;
    }
  }
  for (const auto& l : rt.links_with_alias_prefix(alias_tag()))
    if (rt.delete_link(l)) removed++;
  f_ = fopen(path_.c_str(), "w");
  if (!f_) throw std::runtime_error("cannot write state file " + path_);
  return removed;
}

void Journal::record(const std::string& kind, const std::string& name) {
  if (!f_) return;
  fprintf(f_, "%s %s\n", kind.c_str(), name.c_str());
  fflush(f_);
}

void Journal::record_socket(const std::string& path) {
  if (std::string id = socket_identity(path); !id.empty()) record("sockid", id + ":" + path);
}

void Journal::clear() {
  if (f_) fclose(f_);
  f_ = nullptr;
  unlink(path_.c_str());
}

}  // namespace dpsw
