#include "tests/server_process.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace pixtral {

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::string& binary, const std::vector<std::string>& args, const std::string& name,
    absl::Duration timeout) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  static int started = 0;
  const std::string port_file = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name, "-",
                                             getpid(), "-", ++started, ".port");
  std::vector<std::string> argv_strings = {binary};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  argv_strings.push_back("--port_file=" + port_file);
  std::vector<char*> argv;
  for (std::string& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);

  std::unique_ptr<ServerProcess> process(new ServerProcess());
  const pid_t parent = getpid();
  process->pid_ = fork();
  if (process->pid_ < 0) return absl::InternalError("fork failed");
  if (process->pid_ == 0) {
    // Dies with the test, however the test ends.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    execv(argv[0], argv.data());
    _exit(127);
  }
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::ifstream in(port_file);
    std::string text;
    if (in >> text && absl::SimpleAtoi(text, &process->port_) && process->port_ > 0) {
      return process;
    }
    if (std::optional<int> code = process->Wait(absl::Milliseconds(20)); code.has_value()) {
      return absl::InternalError(absl::StrCat(name, " exited with ", *code, " before serving"));
    }
  }
  return absl::DeadlineExceededError(
      absl::StrCat(name, " did not start within ", absl::FormatDuration(timeout)));
}

ServerProcess::~ServerProcess() {
  if (!exit_code_.has_value() && pid_ > 0) {
    kill(pid_, SIGKILL);
    Wait(absl::InfiniteDuration());
  }
}

std::string ServerProcess::address() const { return absl::StrCat("localhost:", port_); }

void ServerProcess::Signal(int signal) {
  if (!exit_code_.has_value()) kill(pid_, signal);
}

std::optional<int> ServerProcess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!exit_code_.has_value()) {
    int status = 0;
    const pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return exit_code_;
}

}  // namespace pixtral
