module github.com/basaltplatform/basalt/devtools

go 1.26.7
