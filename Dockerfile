# syntax=docker/dockerfile:1
# migrationbot: `docker build -t migrationbot .`, then
#   docker run -p 3000:3000 -e SLACK_SIGNING_SECRET -e SLACK_BOT_TOKEN -e REDIS_URL \
#     -v $PWD/migrationbot.toml:/etc/migrationbot/migrationbot.toml:ro migrationbot

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w" -o /out/migrationbot ./cmd/migrationbot

# distroless/static: CA certificates (Slack's HTTPS, the proxy admin API, TLS checks), tzdata
# (report_schedule's CRON_TZ), /etc/passwd with the nonroot user, nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/migrationbot /usr/local/bin/migrationbot
ENV MIGRATIONBOT_ADDR=:3000 \
    MIGRATIONBOT_CONFIG=/etc/migrationbot/migrationbot.toml
USER nonroot:nonroot
EXPOSE 3000
ENTRYPOINT ["migrationbot"]
CMD ["serve"]
