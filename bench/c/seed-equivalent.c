/*
 * A stand-in for ../shared/seed/fork-echo-server.c, used by bench/compare only when that file is
 * absent. Written from the seed README's description, not copied: the parent accepts and forks one
 * child per connection; the child echoes through a 100-byte buffer until EOF, then shuts down its
 * write side, closes and exits. It keeps the seed's documented defects on purpose, because they are
 * what is being compared: children are never reaped, a failed fork ends the server, a failed accept
 * still forks, children inherit the listener, partial sends are ignored.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY), .sin_port = 0};
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listener, 100) < 0) {
        perror("listen");
        return 1;
    }
    socklen_t len = sizeof addr;
    getsockname(listener, (struct sockaddr *)&addr, &len);
    printf("Listening for connections on port %d\n", ntohs(addr.sin_port));
    for (;;) {
        int conn = accept(listener, NULL, NULL);
        pid_t pid = fork();
        if (pid < 0) {
            perror("Could not fork");
            return 1;
        }
        if (pid == 0) {
            char buf[100];
            ssize_t n;
            while ((n = recv(conn, buf, sizeof buf, 0)) > 0)
                send(conn, buf, (size_t)n, 0);
            shutdown(conn, SHUT_WR);
            close(conn);
            exit(0);
        }
        close(conn);
    }
}
