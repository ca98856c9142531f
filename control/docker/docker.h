// Docker's remote network driver protocol (libnetwork, Docker 20.10) mapped
// onto dpsw's control socket: the logic of dpsw-docker, apart from its HTTP
// server so that unit tests drive it with a fake daemon.
//
// A Docker network is a persisted dpsw network named dk-<12 of its id>,
// with Docker's pool and gateway (Docker's IPAM keeps choosing addresses);
// a Docker endpoint is a persisted handoff endpoint dk-<12 of its id> with
// the address and MAC Docker gives (or the MAC dpsw makes), labelled with
// the full ids. Join hands Docker the veth's container end (it moves it
// into the container and names it eth<N>) and the gateway; published ports
// arrive at ProgramExternalConnectivity and become the endpoint's `publish`.
// Replayed calls and unknown ids succeed (Docker replays Leave,
// DeleteEndpoint and DeleteNetwork after its own restart).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace dpsw::docker {

// One control-socket request -> the daemon's answer ({"ok":..., "result"|"error"}).
// Throws (any std::exception) when the daemon cannot be reached.
using Ctl = std::function<nlohmann::json(const nlohmann::json& request)>;

struct UnknownMethod : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string network_name(const std::string& network_id);
std::string endpoint_name(const std::string& endpoint_id);

inline constexpr const char* kLabelEndpoint = "docker.dpsw/endpoint-id";
inline constexpr const char* kLabelNetwork = "docker.dpsw/network-id";

class Driver {
 public:
  explicit Driver(Ctl ctl) : ctl_(std::move(ctl)) {}
  // One call: `method` as in the URL ("NetworkDriver.CreateNetwork"), its
  // JSON body. Returns the answer's body; a refusal is {"Err": "..."}.
  // Throws UnknownMethod (the server answers 404: Docker then treats an
  // optional call as unsupported).
  nlohmann::json handle(const std::string& method, const nlohmann::json& body);

 private:
  nlohmann::json call(const nlohmann::json& req);  // result, or throws Refused with dpsw's message
  nlohmann::json call_gone_ok(const nlohmann::json& req, const char* unknown);  // a refusal naming `unknown` is success
  nlohmann::json endpoint(const std::string& name);  // `show endpoints NAME`; null when unknown
  nlohmann::json create_network(const nlohmann::json& b);
  nlohmann::json delete_network(const nlohmann::json& b);
  nlohmann::json create_endpoint(const nlohmann::json& b);
  nlohmann::json delete_endpoint(const nlohmann::json& b);
  nlohmann::json join(const nlohmann::json& b);
  nlohmann::json program_external(const nlohmann::json& b);
  nlohmann::json revoke_external(const nlohmann::json& b);
  Ctl ctl_;
};

}  // namespace dpsw::docker
