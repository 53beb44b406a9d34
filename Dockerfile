# longhaul container image: a static binary on an empty base, run as a
# non-root user. Build: docker build -t longhaul:latest .
# deploy/dockerfile_test.go checks this file against deploy/.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/longhaul ./cmd/longhaul
# Names for the numeric user, for tools that look them up.
RUN echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' >/out/passwd && \
    echo 'nonroot:x:65532:' >/out/group

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/group /etc/group
COPY --from=build /out/longhaul /longhaul
USER 65532:65532
# 8080: the example listener (deploy/configmap.yaml); 9901: admin
# (/healthz, /readyz, /metrics).
EXPOSE 8080 9901
ENTRYPOINT ["/longhaul"]
CMD ["run", "--config", "/etc/longhaul/config.yaml"]
