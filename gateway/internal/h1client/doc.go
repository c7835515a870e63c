// Package h1client is the gateway's lean HTTP/1.1 client of upstream instances: pooled
// keep-alive connections written and read on the calling goroutine, their sockets read and
// written directly (see sockio).
//
// It carries calls two ways. Transport is an http.RoundTripper, which the kernel's balancer
// uses for the calls of the gateway's net/http codec marked HTTP1
// (rpcclient.WithHTTP1Transport). Its Exchange method forwards a call the h1 server's fast path
// writes as bytes itself, and reads the answer's head without building net/http's request and
// response; the balancer still chooses the instance, through its Send.
//
// It lives with the gateway rather than in the kernel because only the gateway uses it: the
// services link nothing that reads or writes sockets by their file descriptors.
package h1client
