/* The sandbox ("pause") container of the test cluster: holds the pod's
 * namespaces open, exits on SIGTERM/SIGINT, reaps zombies. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static void on_signal(int sig) {
  (void)sig;
  _exit(0);
}

int main(void) {
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGCHLD, SIG_IGN);
  for (;;) pause();
  return 0;
}
