# Berth in a container: a static binary on distroless, as a non-root user.
#   docker build -t berth .
#   docker run -p 5000:5000 -v berth-data:/var/lib/berth berth
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/berth ./cmd/berth && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/berth /usr/local/bin/berth
# A new volume takes the directory's owner: the non-root user.
COPY --from=build --chown=65532:65532 /out/data /var/lib/berth
VOLUME /var/lib/berth
EXPOSE 5000
ENTRYPOINT ["/usr/local/bin/berth"]
CMD ["serve", "--data", "/var/lib/berth"]
