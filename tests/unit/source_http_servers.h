/* Shared by the http(s) source tests (test_source_http*.c): real servers
 * on 127.0.0.1, nginx for the plain cases and
 * tests/fixtures/faulty_http.py for injected faults, started once per
 * test group as children in their own process groups that die with the
 * test process, serving files written for the group. */
#ifndef SYNCBIT_SOURCE_HTTP_SERVERS_H
#define SYNCBIT_SOURCE_HTTP_SERVERS_H

#include "testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <uv.h>

#include "common/source/source.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/uri.h"

#define MIB	(1024u * 1024u)
#define FIXTURE "tests/fixtures/faulty_http.py"
#define WAIT_MS 20000

struct file {
	const char *name;
	size_t size;
	uint8_t *data;
};

static struct file files[] = {
    {"empty.bin", 0, NULL},
    {"one.bin", 1, NULL},
    {"mib-1.bin", MIB - 1, NULL},
    {"mib.bin", MIB, NULL},
    {"mib+1.bin", MIB + 1, NULL},
    {"four.bin", 4 * MIB, NULL},
    {"big.bin", 20 * MIB + 12345, NULL},
    {"a b.bin", 1000, NULL},
};
#define NFILES (sizeof files / sizeof files[0])

static struct {
	char *dir;
	pid_t nginx, faulty;
	int nginx_port, faulty_port;
} fx;

static inline struct file *file_named(const char *name)
{
	for (size_t i = 0; i < NFILES; i++)
		if (!strcmp(files[i].name, name))
			return &files[i];
	fail_msg("no test file %s", name);
	return NULL;
}

/* Children. */

static inline pid_t spawn(char *const argv[], int *out_fd)
{
	int p[2] = {-1, -1};
	if (out_fd && pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (out_fd) {
			dup2(p[1], 1);
			close(p[0]);
			close(p[1]);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (pid > 0)
		setpgid(pid, pid);
	if (out_fd) {
		close(p[1]);
		*out_fd = pid > 0 ? p[0] : -1;
		if (pid < 0)
			close(p[0]);
	}
	return pid;
}

static inline void reap(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(-*pid, SIGTERM);
	for (int i = 0; i < 300; i++) {
		if (waitpid(*pid, NULL, WNOHANG) == *pid) {
			kill(-*pid, SIGKILL); /* anything the group left behind */
			*pid = 0;
			return;
		}
		usleep(10000);
	}
	kill(-*pid, SIGKILL);
	waitpid(*pid, NULL, 0);
	*pid = 0;
}

static inline void reap_all(void)
{
	reap(&fx.nginx);
	reap(&fx.faulty);
}

/* Killed from outside (a timeout, ^C): no teardown will run, so stop the
 * servers and remove the temp dir here, with async-signal-safe calls only. */
static char dir_for_signal[PATH_MAX];

static inline void on_fatal_signal(int sig)
{
	if (fx.nginx > 0)
		kill(-fx.nginx, SIGKILL);
	if (fx.faulty > 0)
		kill(-fx.faulty, SIGKILL);
	if (dir_for_signal[0]) {
		pid_t pid = fork();
		if (pid == 0) {
			execl("/bin/rm", "rm", "-rf", dir_for_signal, (char *)NULL);
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static inline int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof a;
	int s = socket(AF_INET, SOCK_STREAM, 0), port = -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(s, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (s >= 0)
		close(s);
	return port;
}

static inline int port_open(int port, pid_t pid, int ms)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int waited = 0; waited < ms; waited += 20) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		int ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
		close(s);
		if (ok)
			return 0;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -1;
		usleep(20000);
	}
	return -1;
}

static inline int start_nginx(void)
{
	char conf[PATH_MAX], elog[PATH_MAX];
	snprintf(conf, sizeof conf, "%s/nginx.conf", fx.dir);
	snprintf(elog, sizeof elog, "%s/error.log", fx.dir);
	for (int tries = 0; tries < 5; tries++) {
		int port = free_port();
		FILE *f = fopen(conf, "w");
		if (!f || port < 0)
			return -1;
		fprintf(f,
			"worker_processes 1;\n"
			"master_process off;\n"
			"error_log %s/error.log warn;\n"
			"pid %s/nginx.pid;\n"
			"events { worker_connections 256; }\n"
			"http {\n"
			"  access_log %s/access.log;\n"
			"  client_body_temp_path %s/t-body;\n"
			"  proxy_temp_path %s/t-proxy;\n"
			"  fastcgi_temp_path %s/t-fastcgi;\n"
			"  uwsgi_temp_path %s/t-uwsgi;\n"
			"  scgi_temp_path %s/t-scgi;\n"
			"  default_type application/octet-stream;\n"
			"  sendfile on;\n"
			"  server {\n"
			"    listen 127.0.0.1:%d;\n"
			"    root %s/www;\n"
			"    location /private/ { deny all; }\n"
			"  }\n"
			"}\n",
			fx.dir, fx.dir, fx.dir, fx.dir, fx.dir, fx.dir, fx.dir, fx.dir, port,
			fx.dir);
		fclose(f);
		char *argv[] = {"nginx", "-c", conf, "-p",	    fx.dir,
				"-e",	 elog, "-g", "daemon off;", NULL};
		fx.nginx = spawn(argv, NULL);
		if (fx.nginx > 0 && port_open(port, fx.nginx, 5000) == 0) {
			fx.nginx_port = port;
			return 0;
		}
		reap(&fx.nginx); /* most likely lost the port to someone else */
	}
	return -1;
}

static inline int start_faulty(void)
{
	char www[PATH_MAX], line[32] = {0};
	int fd;
	if (access(FIXTURE, R_OK) != 0) {
		fprintf(stderr, "%s not found: run from the repository root\n", FIXTURE);
		return -1;
	}
	snprintf(www, sizeof www, "%s/www", fx.dir);
	char *argv[] = {"python3", FIXTURE, "--dir", www, NULL};
	fx.faulty = spawn(argv, &fd);
	if (fx.faulty <= 0)
		return -1;
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	size_t n = 0;
	while (n < sizeof line - 1 && !strchr(line, '\n')) {
		if (poll(&pfd, 1, 10000) <= 0)
			break;
		ssize_t k = read(fd, line + n, sizeof line - 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	char *end;
	unsigned long port = strtoul(line, &end, 10);
	if (end == line || port == 0 || port > 65535)
		return -1;
	fx.faulty_port = (int)port;
	return port_open(fx.faulty_port, fx.faulty, 5000);
}

static inline int write_files(void)
{
	char path[PATH_MAX];
	uint64_t x = 0x9e3779b97f4a7c15ull;
	snprintf(path, sizeof path, "%s/www", fx.dir);
	if (mkdir(path, 0755) < 0)
		return -1;
	snprintf(path, sizeof path, "%s/www/dir", fx.dir);
	if (mkdir(path, 0755) < 0)
		return -1;
	for (size_t i = 0; i < NFILES; i++) {
		struct file *f = &files[i];
		f->data = malloc(f->size ? f->size : 1);
		for (size_t j = 0; j < f->size; j++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			f->data[j] = (uint8_t)(x >> 24);
		}
		snprintf(path, sizeof path, "%s/www/%s", fx.dir, f->name);
		FILE *out = fopen(path, "wb");
		if (!out || fwrite(f->data, 1, f->size, out) != f->size) {
			if (out)
				fclose(out);
			return -1;
		}
		fclose(out);
	}
	return 0;
}

static inline int group_teardown(void **state)
{
	reap_all();
	for (size_t i = 0; i < NFILES; i++) {
		free(files[i].data);
		files[i].data = NULL;
	}
	dir_for_signal[0] = '\0';
	testutil_rmtree(fx.dir);
	fx.dir = NULL;
	return 0;
}

static inline int group_setup(void **state)
{
	atexit(reap_all);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fx.dir = testutil_mkdtemp();
	if (fx.dir)
		snprintf(dir_for_signal, sizeof dir_for_signal, "%s", fx.dir);
	signal(SIGTERM, on_fatal_signal);
	signal(SIGINT, on_fatal_signal);
	signal(SIGHUP, on_fatal_signal);
	/* nginx may drop to another user; it must be able to read the tree. */
	if (!fx.dir || chmod(fx.dir, 0755) < 0 || write_files() < 0 || start_nginx() < 0 ||
	    start_faulty() < 0) {
		fprintf(stderr, "test_source_http: cannot set up the servers\n");
		group_teardown(state);
		return -1;
	}
	return 0;
}

#endif
