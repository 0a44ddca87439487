// tcp-relay: the baseline stanza-bench compares stanzad with. It forwards the
// bytes of connection i to connection (i+1) % N without looking at them, the
// same topology stanza-bench's bridges use, so the difference to stanzad is
// what parsing, checking and routing XMPP costs.
//
//   tcp-relay --listen=127.0.0.1:25300 [--threads=2]
//   stanza-bench --protocol=relay --server=127.0.0.1:25300 --bridges=20
//
// Each connection first sends a 12-byte hello: "SBRL", its index and the
// number of connections N (both 32-bit, network order). When all N of a set
// have arrived, each gets the byte 'R' and forwarding starts. Connections are
// spread over --threads epoll threads by index; the thread that reads
// connection i is the only one that writes to connection i+1 (blocking in
// poll() when that socket is full), so the data path takes no locks. A set
// is closed when all of its connections have closed; the relay then waits
// for the next set. It runs until killed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Set;

struct Connection {
  int fd = -1;
  Connection* next = nullptr;  // where this connection's bytes go
  Set* set = nullptr;
  int epoll_fd = -1;
};

struct Set {
  std::vector<std::unique_ptr<Connection>> connections;
  std::atomic<size_t> open{0};
};

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "tcp-relay: %s\n", message.c_str());
  std::exit(1);
}

// Sends all of data to fd, waiting in poll() while the socket is full.
bool SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n > 0) {
      data += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, 1000);
      continue;
    }
    return false;
  }
  return true;
}

void CloseConnection(Connection* connection) {
  epoll_ctl(connection->epoll_fd, EPOLL_CTL_DEL, connection->fd, nullptr);
  shutdown(connection->fd, SHUT_RDWR);
  Set* set = connection->set;
  // The last one out closes every descriptor of the set, so no thread can
  // still be writing to a descriptor number that was reused.
  if (set->open.fetch_sub(1) == 1) {
    for (const auto& c : set->connections) close(c->fd);
    delete set;
  }
}

void Worker(int epoll_fd) {
  std::vector<char> buffer(64 * 1024);
  epoll_event events[256];
  while (true) {
    const int count = epoll_wait(epoll_fd, events, 256, -1);
    for (int e = 0; e < count; ++e) {
      auto* connection = static_cast<Connection*>(events[e].data.ptr);
      const ssize_t n = recv(connection->fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0 || !SendAll(connection->next->fd, buffer.data(), static_cast<size_t>(n))) {
        CloseConnection(connection);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen_address = "127.0.0.1:25300";
  int threads = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--listen=", 0) == 0) {
      listen_address = arg.substr(9);
    } else if (arg.rfind("--threads=", 0) == 0) {
      threads = std::max(1, std::atoi(arg.c_str() + 10));
    } else {
      std::fprintf(stderr, "usage: tcp-relay [--listen=127.0.0.1:25300] [--threads=2]\n");
      return arg == "--help" ? 0 : 2;
    }
  }
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = files.rlim_max;
  setrlimit(RLIMIT_NOFILE, &files);

  const size_t colon = listen_address.rfind(':');
  if (colon == std::string::npos) Die("--listen must be HOST:PORT");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(std::atoi(listen_address.c_str() + colon + 1)));
  if (inet_pton(AF_INET, listen_address.substr(0, colon).c_str(), &address.sin_addr) != 1) {
    Die("--listen must be an IPv4 address and port");
  }
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(listener, 4096) != 0) {
    Die("cannot listen on " + listen_address + ": " + std::strerror(errno));
  }
  std::vector<int> epolls;
  for (int t = 0; t < threads; ++t) {
    epolls.push_back(epoll_create1(EPOLL_CLOEXEC));
    std::thread(Worker, epolls.back()).detach();
  }
  std::fprintf(stderr, "tcp-relay: listening on %s with %d threads\n", listen_address.c_str(),
               threads);

  Set* pending = nullptr;
  size_t arrived = 0;
  while (true) {
    const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    // The hello arrives right after connect; a client that does not send it
    // within 5 s is dropped.
    timeval timeout{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    char hello[12];
    if (recv(fd, hello, sizeof(hello), MSG_WAITALL) != sizeof(hello) ||
        std::memcmp(hello, "SBRL", 4) != 0) {
      close(fd);
      continue;
    }
    uint32_t index, count;
    std::memcpy(&index, hello + 4, 4);
    std::memcpy(&count, hello + 8, 4);
    index = ntohl(index);
    count = ntohl(count);
    if (count < 2 || count > 1000000 || index >= count ||
        (pending != nullptr &&
         (pending->connections.size() != count || pending->connections[index] != nullptr))) {
      std::fprintf(stderr, "tcp-relay: bad hello (index %u of %u); dropping the set\n", index,
                   count);
      close(fd);
      continue;
    }
    if (pending == nullptr) {
      pending = new Set;
      pending->connections.resize(count);
      arrived = 0;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto connection = std::make_unique<Connection>();
    connection->fd = fd;
    connection->set = pending;
    connection->epoll_fd = epolls[index % epolls.size()];
    pending->connections[index] = std::move(connection);
    if (++arrived < count) continue;

    Set* set = pending;
    pending = nullptr;
    set->open = count;
    for (size_t i = 0; i < count; ++i) {
      set->connections[i]->next = set->connections[(i + 1) % count].get();
    }
    for (const auto& c : set->connections) {
      timeval none{0, 0};
      setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
      SendAll(c->fd, "R", 1);
      epoll_event event{};
      event.events = EPOLLIN;
      event.data.ptr = c.get();
      epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, c->fd, &event);
    }
    std::fprintf(stderr, "tcp-relay: relaying a set of %u connections\n", count);
  }
}
