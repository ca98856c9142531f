// The embedded DNS responder's control side (issue 16; the packet side is
// dataplane/dns): builds the snapshot's DnsTable from the endpoints in force
// (names, aliases, "NAME.NETWORK", reverse names, each asker's scope), marks
// the bridge networks whose gateway answers, and points the namespaces dpsw
// creates at their gateway (/etc/netns/NAME/resolv.conf, which `ip netns
// exec` bind-mounts over /etc/resolv.conf). `show dns` lists the names.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "control/core/module.h"

namespace dpsw {

class Dns : public Module {
 public:
  explicit Dns(Core& core) : Module(core) {}

  const char* name() const override { return "dns"; }
  void start() override;                         // removes resolv.conf files a crashed run of this instance left
  void apply() override;                         // the upstream servers (dns.upstream, or the host's resolv.conf)
  void reload_check(Reload& r) const override;   // "dns" in what it applies
  void contribute(Snapshot& s) const override;   // the DnsTable, BdEntry::dns
  void published() override;                    // resolv.conf of the namespaces dpsw created, as the endpoints now are
  void views(ViewRegistry& r) override;          // show dns
  void counters(nlohmann::json& out) const override;  // "dns": the workers' DNS counters
  void stop() override;                          // removes the resolv.conf files it wrote

  // The nameservers of a resolv.conf text (IPv4, outside 127/8: a loopback
  // stub is not reachable through the uplink).
  static std::vector<uint32_t> nameservers(const std::string& resolv_conf);
  // The resolv.conf dpsw writes for a namespace whose DNS is at `gateway`.
  static std::string resolv_conf(const std::string& instance, uint32_t gateway);

 private:
  std::string netns_dir(const std::string& netns) const;
  void remove_file(const std::string& netns);
  std::vector<uint32_t> upstream_;
  uint64_t tcp_secret_ = random_secret();  // keys the TCP responder's sequence numbers for the whole run
  static uint64_t random_secret();
  std::map<std::string, std::string> written_;  // namespace -> the resolv.conf written for it
  std::set<std::string> foreign_;               // namespaces whose resolv.conf is not ours (warned once)
};

}  // namespace dpsw
