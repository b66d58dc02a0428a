// A server binary run as a child process for cross-process tests: started with --port_file so
// it picks a free port itself (tests never race on fixed ports), ready once it has written the
// file (the binaries start listening only after their model is loaded), and killed with the test.
//
//   absl::StatusOr<std::unique_ptr<ServerProcess>> worker = ServerProcess::Start(
//       "services/vision_worker/vision_worker", {"--model_dir=" + dir}, "vision");
//   ... connect to absl::StrCat("localhost:", (*worker)->port()) ...
//   (*worker)->Signal(SIGTERM);
//   EXPECT_EQ((*worker)->Wait(absl::Seconds(10)), 0);
#ifndef PIXTRAL_TESTS_SERVER_PROCESS_H_
#define PIXTRAL_TESTS_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace pixtral {

class ServerProcess {
 public:
  // Runs `binary` (a runfiles path) with `args` plus --port_file, and waits up to `timeout` for
  // the port. `name` labels the files in TEST_TMPDIR and the log lines. A process that exits or
  // stays silent is an error carrying its exit status.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::string& binary, const std::vector<std::string>& args, const std::string& name,
      absl::Duration timeout = absl::Seconds(60));

  ~ServerProcess();  // SIGKILL if still running

  int port() const { return port_; }
  std::string address() const;
  pid_t pid() const { return pid_; }

  void Signal(int signal);
  // The exit code (128 + signal if killed by one), or nullopt if it is still running after
  // `timeout`.
  std::optional<int> Wait(absl::Duration timeout);

 private:
  ServerProcess() = default;

  pid_t pid_ = -1;
  int port_ = 0;
  std::optional<int> exit_code_;
};

}  // namespace pixtral

#endif  // PIXTRAL_TESTS_SERVER_PROCESS_H_
